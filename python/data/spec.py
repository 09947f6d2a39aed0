"""What a dataset registers (:data:`python.data.registry.DATASETS`): its loader, its network sizes and feature
extractor F, its default schedule, its --quick size and the settings (flags) it adds to the run config."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..flags import Setting

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..config import TrainConfig
    from ..models import ModelSpec
    from .base import DataBundle


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset.

    name: the ``--dataset`` value. summary: what ``--dataset``'s help says about it. load(config) -> DataBundle: the
    loader called with the config's settings (the bundle's ``extra_metrics`` included). model: DESIGN §3's sizes of
    the branches, predictors and estimator. features(train_inputs, resnet_weights) -> F, sized from the train
    split's stored inputs (a tuple of tensors with first dim n, before ``to_model_input``); ``resnet_weights``: the
    --resnet-weights file or None. defaults: settings that differ from :class:`TrainConfig`'s defaults for this
    dataset (the schedule: ``lambda_`` and the epoch counts). quick_train_rows: --quick trains on at most this many
    random rows of the train split (None: the loader shrinks the data itself, or not at all). settings: the config
    fields (and flags) this dataset adds. check(config): raises ValueError when the config cannot work for this
    dataset (run only for this dataset's configs). data_root: what ``--data-root DIR`` holds for this dataset, for
    the flag's help ("" where the dataset takes no data root).
    """

    name: str
    summary: str
    load: Callable[[TrainConfig], DataBundle]
    model: ModelSpec
    features: Callable[[Sequence[torch.Tensor], str | None], nn.Module]
    defaults: Mapping[str, Any]
    quick_train_rows: int | None = None
    settings: tuple[Setting, ...] = field(default=())
    check: Callable[[TrainConfig], None] | None = None
    data_root: str = ""
