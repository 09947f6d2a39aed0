"""CSAD on your own PyTorch model and data: :class:`Debiaser`.

You give the feature extractor F (any ``nn.Module``: ``F(*inputs) -> z (n, d_z)``) and, if you like, the target
branch D_y, the target predictor P_y, the bias branch D_b and the bias predictor(s) P_b; what you leave out is built
to the sizes you give (MLPs, as the project's tabular model). The Debiaser then runs Algorithm 2 of the paper exactly
as ``python -m python.train --method csad`` does, because it *is* that method (``python.methods.csad``) on your
modules: phases ``pretrain_target``, ``pretrain_bias`` (ends early on a plateau), ``pretrain_estimator`` and
``adversarial``; per adversarial minibatch one target step, K bias steps, K estimator steps and one step of F
minimising λ·I.

Two ways to train:

* ``debiaser.fit(loader)``: every phase over your DataLoader of ``(x, y, bias)`` batches (``x`` a tensor or a
  tuple of F's inputs, ``y (n,)`` int target labels, ``bias (n,)`` or ``(n, heads)`` int bias labels); with
  ``checkpoint=PATH`` it saves after every epoch and continues from that file when it exists.
* ``debiaser.step(x, y, bias, phase=...)`` inside your own loop: one minibatch of one phase, returning its losses.

Under torchrun (after :func:`python.distributed.setup`) each process passes its own shard of every global
minibatch (e.g. a ``DistributedSampler`` with ``drop_last=True``: equal shards); gradients are summed over processes
and the estimator compares the samples of the global minibatch, as in the CLI (docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from csad_kernels.module import mlp

from . import checkpoint, distributed
from . import config as cfg
from .methods import METHODS, Batch, Method, Phase
from .methods.base import TaskSizes
from .models import BiasHeads, BranchedNet
from .trainer import plateaued

# TrainConfig fields a Debiaser takes as keyword arguments (the CLI flags of the same names)
SCHEDULE_SETTINGS = ("pretrain_epochs", "bias_epochs", "estimator_epochs", "epochs", "lr", "estimator_lr",
                     "weight_decay", "lambda_", "k_inner", "alpha", "tau", "c", "backend", "conditional",
                     "local_estimator")
# defaults for your own data: those of --dataset csv (Adult's schedule, λ = 10)
OWN_DATA_DEFAULTS = {k: v for k, v in cfg.DATASET_DEFAULTS["csv"].items() if k in SCHEDULE_SETTINGS}


def schedule_config(method: str, settings: dict[str, Any]) -> cfg.TrainConfig:
    """The :class:`~python.config.TrainConfig` of ``method`` with ``settings`` (:data:`SCHEDULE_SETTINGS`), checked
    as the CLI checks its flags."""
    unknown = sorted(set(settings) - set(SCHEDULE_SETTINGS))
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; known: {list(SCHEDULE_SETTINGS)}")
    if method not in cfg.ESTIMATOR_METHODS:
        raise ValueError(f"method must be one of {cfg.ESTIMATOR_METHODS}, got {method!r}")
    config = dataclasses.replace(cfg.TrainConfig(), method=method, **{**OWN_DATA_DEFAULTS, **settings})
    cfg.validate(config)
    return config


def output_dim(module: nn.Module, n_in: int) -> int:
    """Width of ``module``'s output on inputs ``(2, n_in)``, probed in eval mode (BatchNorm statistics untouched)."""
    param = next(module.parameters(), None)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, n_in) if param is None else param.new_zeros(2, n_in))
    finally:
        module.train(was_training)
    return out.shape[-1]


def as_inputs(x: torch.Tensor | Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    """F's inputs on ``device``: ``x`` alone, or each tensor of a tuple/list ``x``."""
    parts = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    return tuple(t.to(device) for t in parts)


class Debiaser:
    """Algorithm 2 of CSAD on your own modules.

    Args:
        features: F, ``F(*inputs) -> z (n, d_z)``.
        n_classes: target classes (2: P_y has one output and the loss is binary cross-entropy).
        bias_classes: classes of each bias attribute, one bias head each, e.g. ``(2,)`` or ``(2, 5)``.
        feature_dim: d_z (default: ``features.out_dim``); needed to build or size the branches.
        target_branch, target_head, bias_branch, bias_heads: your D_y ``z -> h^y (n, d_y)``, P_y ``h^y -> logits``
            (``(n, 1)`` or ``(n,)`` for 2 classes, else ``(n, n_classes)``), D_b ``z -> h^b (n, d_b)``, P_b
            ``h^b ->`` a list of ``(n, classes_k)`` (or one tensor for one head). Left out: built as
            ``Linear(d_z, branch_dim) + ReLU`` for a branch, one ``Linear`` for a predictor.
        branch_dim: width of a branch that is built.
        estimator_hidden: layer sizes of the estimator's heads My, Mb after their input (d_y, d_b).
        method: the estimator, as the CLI's ``--method``: ``csad`` (Eq. 2), ``csad_ms`` (the authors'
            multi-similarity estimator), ``csad_content``, ``csad_struc`` or ``ad_jsd``.
        tolerance: Ω's tolerance on the bias labels (0: pairs with equal bias labels are positives).
        device: where to train (default: the device of ``features``' parameters).
        **settings: the schedule, as the CLI's flags of the same name: ``pretrain_epochs``, ``bias_epochs``,
            ``estimator_epochs``, ``epochs``, ``lr``, ``estimator_lr``, ``weight_decay``, ``lambda_``, ``k_inner``
            (K), ``alpha``, ``tau``, ``c``, ``backend`` (``csad_kernels`` backend), ``conditional`` (only pairs of
            the same target), ``local_estimator`` (torchrun). Defaults: ``--dataset csv``'s (λ = 10, 5/1/1/5
            epochs, K = 10).
    """

    def __init__(self, features: nn.Module, *, n_classes: int, bias_classes: Sequence[int],
                 feature_dim: int | None = None, target_branch: nn.Module | None = None,
                 target_head: nn.Module | None = None, bias_branch: nn.Module | None = None,
                 bias_heads: nn.Module | None = None, branch_dim: int = 32, estimator_hidden: Sequence[int] = (32, 32),
                 method: str = "csad", tolerance: int = 0, device: str | torch.device | None = None,
                 **settings: Any) -> None:
        self.config = schedule_config(method, settings)
        if n_classes < 2 or not bias_classes or min(bias_classes) < 2:
            raise ValueError(f"need n_classes >= 2 and bias_classes of >= 2 each, got {n_classes}, {bias_classes}")
        d_z = feature_dim if feature_dim is not None else getattr(features, "out_dim", None)
        if d_z is None:
            raise ValueError("give feature_dim: the width of F's output z (n, d_z); features has no out_dim")
        d_y = target_branch if target_branch is not None else mlp((d_z, branch_dim), last_relu=True)
        d_b = bias_branch if bias_branch is not None else mlp((d_z, branch_dim), last_relu=True)
        width_y, width_b = output_dim(d_y, d_z), output_dim(d_b, d_z)
        p_y = target_head if target_head is not None else mlp((width_y, 1 if n_classes == 2 else n_classes))
        p_b = bias_heads if bias_heads is not None else BiasHeads((width_b,), bias_classes)
        hidden = tuple(estimator_hidden)
        net = BranchedNet(features, d_y, p_y, d_b, p_b, n_classes=n_classes,
                          estimator_sizes=((width_y, *hidden), (width_b, *hidden)))
        self.device = torch.device(device) if device is not None else _device_of(features)
        self.net = net.to(self.device)
        self.method: Method = METHODS[method](net, TaskSizes(n_classes, tuple(bias_classes), tolerance), self.config)
        self.method.extra.to(self.device)
        distributed.broadcast_module(self.net)  # identical parameters on every rank under torchrun
        distributed.broadcast_module(self.method.extra)
        self.phases: list[Phase] = self.method.phases()
        self.phase_index, self.epoch, self.history = 0, 0, []

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p in self.phases]

    # ----- one minibatch
    def batch(self, x: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, bias: torch.Tensor) -> Batch:
        """The method's :class:`~python.methods.base.Batch` of ``x``, ``y (n,)``, ``bias (n,)`` or ``(n, heads)`` on
        the device; under torchrun this process's shard of the global minibatch (``total`` its size)."""
        inputs = as_inputs(x, self.device)
        bias = bias.to(self.device).long()
        bias = bias[:, None] if bias.dim() == 1 else bias
        n = len(y)
        total = None
        if distributed.is_distributed():
            total = round(distributed.sum_over_ranks({"n": float(n)})["n"])
            if n != distributed.shard_sizes(total)[distributed.rank()]:
                raise ValueError(f"process {distributed.rank()} got {n} of the {total} rows of a global minibatch; "
                                 "give every process an equal shard (DistributedSampler, drop_last=True)")
        return Batch(inputs, y.to(self.device).long(), bias, total=total)

    def step(self, x: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, bias: torch.Tensor, *,
             phase: str = "adversarial") -> dict[str, float]:
        """One minibatch of ``phase`` (one of :attr:`phase_names`; default the adversarial phase: one target step,
        K bias steps, K estimator steps, one step of F on λ·I). Returns its losses (``target``, ``bias``, ``mi``,
        ``mi_adversarial``: those the phase computes), summed over processes under torchrun."""
        if phase not in self.phase_names:
            raise ValueError(f"phase must be one of {self.phase_names}, got {phase!r}")
        return distributed.sum_over_ranks(self.method.step(phase, self.batch(x, y, bias)))

    # ----- every phase over a DataLoader
    def fit(self, loader: Iterable, *, checkpoint_path: str | Path | None = None) -> list[dict[str, Any]]:
        """Every phase of Algorithm 2 over ``loader`` (batches ``(x, y, bias)``), continuing from where this
        Debiaser (or the checkpoint at ``checkpoint_path``, when that file exists) stopped; with
        ``checkpoint_path`` it saves after every epoch. Returns the history: one row per epoch (phase, epoch,
        mean losses)."""
        path = None if checkpoint_path is None else Path(checkpoint_path)
        if path is not None and distributed.from_main(path.exists):
            self.load_state_dict(distributed.from_main(lambda: checkpoint.load(path)))
        self.net.train()
        while self.phase_index < len(self.phases):
            phase = self.phases[self.phase_index]
            if self.epoch < phase.epochs:
                losses = self.run_epoch(loader, phase.name)
                self.history.append({"phase": phase.name, "epoch": self.epoch + 1, **losses})
            self.advance(phase)
            if path is not None and distributed.is_main():
                checkpoint.save_atomic(self.state_dict(), path)
        return self.history

    def advance(self, phase: Phase) -> None:
        """Move past the epoch just run: to the next phase when ``phase`` has run its epochs or plateaued."""
        self.epoch += 1
        if self.epoch >= phase.epochs or plateaued(self.history, phase):
            self.phase_index, self.epoch = self.phase_index + 1, 0

    def run_epoch(self, loader: Iterable, phase: str) -> dict[str, float]:
        """One pass of ``phase`` over ``loader``; the mean of each loss over its minibatches."""
        sums: dict[str, float] = {}
        count = 0
        for x, y, bias in loader:
            for key, value in self.step(x, y, bias, phase=phase).items():
                if not math.isfinite(value):
                    raise FloatingPointError(f"phase {phase}: loss {key} is {value}; try a smaller lr or lambda_")
                sums[key] = sums.get(key, 0.0) + value
            count += 1
        if not count:
            raise ValueError("the loader yielded no batches")
        return {k: v / count for k, v in sums.items()}

    # ----- using the model
    @torch.no_grad()
    def outputs(self, x: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """In eval mode, without a graph: ``logits`` (``(n,)`` for 2 classes, else ``(n, n_classes)``), the
        features ``z (n, d_z)`` and the target features ``h^y (n, d_y)`` of ``x``."""
        was_training = self.net.training
        self.net.eval()
        try:
            z = self.net.features(*as_inputs(x, self.device))
            hy = self.net.target_branch(z)
            return {"logits": self.net.target_logits(hy), "features": z, "target_features": hy}
        finally:
            self.net.train(was_training)

    # ----- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything to continue training: modules, estimator, optimizers, and where the schedule stands."""
        return {"net": self.net.state_dict(), "method": self.method.state_dict(), "phase": self.phase_index,
                "epoch": self.epoch, "history": self.history, "method_name": self.method.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("method_name") != self.method.name:
            raise ValueError(f"state of method {state.get('method_name')!r}, not {self.method.name!r}")
        self.net.load_state_dict(state["net"])
        self.method.load_state_dict(state["method"])
        self.phase_index, self.epoch, self.history = state["phase"], state["epoch"], list(state["history"])


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return torch.device("cpu") if param is None else param.device
