"""The vanilla baseline trained for its encoder F when neither a features file nor a run is given."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from .. import config as cfg
from ..flags import add_flag, flag_of

WHERE_THE_DATA_IS = ("data_root", "cache_dir")  # the run settings of the data, beside the datasets' own


def data_fields() -> list[dataclasses.Field]:
    """The config fields that the trained baseline takes from this CLI: where the data is, and every dataset's own
    settings (:data:`python.data.registry.DATASETS`)."""
    names = {*WHERE_THE_DATA_IS, *cfg.dataset_settings()}
    return [field for field in dataclasses.fields(cfg.TrainConfig) if field.name in names]


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """The train CLI's flags of :func:`data_fields`, with its help, for the baseline trained here."""
    kinds = typing.get_type_hints(cfg.TrainConfig)
    for field in data_fields():
        flag = flag_of(field)
        add_flag(parser, field.name, kinds[field.name],
                 dataclasses.replace(flag, help=f"when a baseline is trained: {flag.help}"))


def data_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The data flags given on this command line, as config settings (field name -> value)."""
    given = {field.name: getattr(args, field.name) for field in data_fields()}
    return {name: value for name, value in given.items() if value not in (None, False)}


def train_baseline(dataset: str, out: Path, quick: bool, seed: int, data: dict[str, Any] | None = None) -> Path:
    """Train the dataset's vanilla baseline into ``out/encoder`` (reused when it is already complete); ``data``:
    the data settings of its config (``{"data_root": DIR}`` ...)."""
    from .. import train

    run = out / "encoder"
    if (run / "metrics.json").is_file():
        return run
    given = {"dataset": dataset, "method": "baseline", "baseline": False, "out": str(run), "seed": seed,
             **(data or {}), **({"quick": True} if quick else {})}
    train.run_training(train.config_for(given), train.RunOptions(overwrite=True, progress=False))
    return run
