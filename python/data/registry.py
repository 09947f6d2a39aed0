"""The one list of datasets: ``--dataset NAME`` trains on ``DATASETS[NAME]``. Adding a dataset: write its module with
its :class:`~python.data.spec.DatasetSpec` ``SPEC`` and add it here (CONTRIBUTING.md)."""

from __future__ import annotations

from . import adult, celeba, colored_mnist, csv_table, imdb, mpower
from .spec import DatasetSpec

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (mpower.SPEC, adult.SPEC, colored_mnist.SPEC, celeba.SPEC, imdb.SPEC, csv_table.SPEC)
}
