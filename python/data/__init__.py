"""Dataset loaders. ``load_dataset(config)`` loads ``config.dataset`` as its spec says
(:data:`python.data.registry.DATASETS`): the real data under ``--data-root`` or the embedded default."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .base import SPLITS, DataBundle, Split
from .registry import DATASETS

if TYPE_CHECKING:
    from ..config import TrainConfig


def shrink_train(bundle: DataBundle, rows: int, seed: int) -> None:
    """Keep a random ``rows`` of the train split (for --quick), saying so in the bundle's log."""
    train = bundle.splits["train"]
    if len(train) <= rows:
        return
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:rows]
    bundle.splits["train"] = train.subset(keep.sort().values)
    bundle.log.append(f"--quick: training on {rows} random rows of the {len(train)} of the train split")


def load_dataset(config: TrainConfig) -> DataBundle:
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}")
    spec = DATASETS[config.dataset]
    bundle = spec.load(config)
    if config.quick and spec.quick_train_rows is not None:
        shrink_train(bundle, spec.quick_train_rows, config.seed)
    return bundle


__all__ = ["DATASETS", "SPLITS", "DataBundle", "Split", "load_dataset"]
