"""One trainer for every method: phases, minibatches, evaluation, checkpoints, resume, progress bars.

Under torchrun (``python.distributed``) every rank draws the same global minibatches and trains on its own shard
of each; losses are reduced over ranks every step, evaluation forward passes are sharded and gathered, and only
rank 0 writes checkpoints and shows progress. In a single process all of that is an identity.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint, distributed
from .config import TrainConfig
from .data.base import DataBundle, Split
from .methods import METHODS, Batch, Method, Phase
from .metrics import bias_leakage, target_metrics, within_bin_auc
from .models import DebiasNet

EVAL_BATCH = 512
PLATEAU_EPOCHS, PLATEAU_TOLERANCE = 2, 0.01  # a phase with a plateau loss ends when 2 epochs gained < 1%


class Interrupted(RuntimeError):
    """Raised by ``Trainer.fit(stop_after_epochs=...)``: the run stopped after a checkpoint, as a kill would."""


def resolve_device(name: str) -> torch.device:
    """The device for ``--device name`` (under torchrun: this rank's GPU, see ``distributed.device_for``)."""
    return distributed.device_for(name)


def epoch_seed(seed: int, phase: int, epoch: int) -> int:
    """The RNG seed of one epoch: batches and any randomness inside it depend only on (seed, phase, epoch),
    so a resumed run replays exactly what an uninterrupted one does."""
    return (seed * 1_000_003 + phase * 10_007 + epoch) % (2**63)


@dataclass
class RunResult:
    method: str
    metrics: dict[str, dict[str, float]]
    bias_leakage: dict[str, dict[str, dict[str, float]]]
    history: list[dict[str, Any]]
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "metrics": self.metrics, "bias_leakage": self.bias_leakage,
                "wall_time_s": self.wall_time_s}


class Trainer:
    """Trains ``method_name`` on ``bundle`` with ``config``; checkpoints to ``checkpoint_path`` after every epoch."""

    def __init__(self, config: TrainConfig, bundle: DataBundle, method_name: str, checkpoint_path: Path,
                 device: torch.device, *, show_progress: bool = True) -> None:
        self.config, self.bundle, self.device = config, bundle, device
        self.checkpoint_path, self.show_progress = checkpoint_path, show_progress and distributed.is_main()
        world = distributed.world_size()
        distributed.check_batch_size(config.batch_size)
        # a last minibatch smaller than this joins the one before: each rank's shard needs two samples
        self.least_batch = 2 * world
        # the splits stay where the loader put them (the CPU); only minibatches go to the device (to_model_input)
        self.splits = bundle.splits
        torch.manual_seed(config.seed)
        train_inputs = bundle.splits["train"].inputs
        self.net = DebiasNet(config.dataset, train_inputs, bundle.n_classes, bundle.bias_classes,
                             resnet_weights=config.resnet_weights).to(device)
        if world > 1 and device.type == "cuda" and not getattr(self.net.f, "freeze_bn", False):
            # BatchNorm statistics over the global minibatch, as in one process (CPU: see average_batchnorm_stats)
            self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        self.method: Method = METHODS[method_name](self.net, bundle, config)
        self.method.extra.to(device)
        distributed.broadcast_module(self.net)
        distributed.broadcast_module(self.method.extra)
        self.primary = "auc" if bundle.n_classes == 2 else "accuracy"

    # ----- batches
    def batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        """Index batches of one epoch: draws by the method's sampling weights when it has them, else
        class-balanced draws when ``balanced_batches``, else a permutation."""
        y, size = self.splits["train"].y, self.config.batch_size
        n = len(y)
        weights = self.method.sampling_weights(y, self.splits["train"].bias)
        if weights is not None:
            order = torch.multinomial(weights, n, replacement=True, generator=generator)
        elif self.config.balanced_batches:
            order = class_balanced_order(y, self.bundle.n_classes, generator)
        else:
            order = torch.randperm(n, generator=generator)
        return split_into_batches(order, size, self.least_batch)

    def batches_per_epoch(self) -> int:
        return len(split_into_batches(torch.arange(len(self.splits["train"])), self.config.batch_size,
                                      self.least_batch))

    def batch(self, index: torch.Tensor) -> Batch:
        """The minibatch of train rows ``index (b,)`` on the device, its inputs made what F takes by the bundle's
        ``to_model_input``; under torchrun this rank's shard of it, knowing the total."""
        split = self.splits["train"]
        total = len(index) if distributed.is_distributed() else None
        index = distributed.shard(index)
        inputs = self.bundle.to_model_input(tuple(x[index] for x in split.inputs), self.device)
        return Batch(inputs, split.y[index].to(self.device), split.bias[index].to(self.device), total=total)

    # ----- evaluation
    @torch.no_grad()
    def outputs(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """Target logits, features z = F(x) and target features h^y of ``inputs`` (rows shaped like a split's
        stored inputs, on the CPU), on the CPU, computed in eval mode, EVAL_BATCH rows at a time: each chunk goes
        through the bundle's ``to_model_input`` to the device. Under torchrun each rank computes its shard of the
        rows and every rank gets all of them."""
        self.net.eval()
        n = len(inputs[0])
        rows = distributed.shard(torch.arange(n))
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        parts: dict[str, list[torch.Tensor]] = {"logits": [], "features": [], "target_features": []}
        for start in range(lo, hi, EVAL_BATCH) or [lo]:
            chunk = tuple(x[start:min(start + EVAL_BATCH, hi)] for x in inputs)
            z = self.net.features(*self.bundle.to_model_input(chunk, self.device))
            hy = self.net.target_branch(z)
            for key, value in (("logits", self.net.target_logits(hy)), ("features", z), ("target_features", hy)):
                parts[key].append(value.float().cpu())
        self.net.train()
        return {k: distributed.gather_rows(torch.cat(v), n) for k, v in parts.items()}

    def evaluate(self, name: str, outputs: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Metrics of split ``name``: the target's, ``within_bin_auc`` and the dataset's ``extra_metrics``, from one
        forward pass over the split (and one over each counterfactual copy the dataset declares). ``outputs``: the
        split's :meth:`outputs` when already computed."""
        split = self.splits[name]
        logits = (self.outputs(split.inputs) if outputs is None else outputs)["logits"]
        metrics = target_metrics(logits, split.y.cpu())
        head = self.bundle.within_bin_head
        if head is not None:
            metrics["within_bin_auc"] = within_bin_auc(logits, split.y.cpu(), split.bias[:, head].cpu())
        if self.bundle.extra_metrics is not None:
            metrics.update(self.bundle.extra_metrics(self.with_counterfactual_logits(split, logits), split))
        return metrics

    def with_counterfactual_logits(self, split: Split, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``logits`` (``(n,)`` or ``(n, classes)``, those of ``split.inputs``) followed by the logits of each copy
        in the dataset's ``counterfactuals(split)``: what ``DataBundle.extra_metrics`` takes."""
        copies = self.bundle.counterfactuals(split) if self.bundle.counterfactuals is not None else []
        return (logits, *(self.outputs(copy)["logits"] for copy in copies))

    def leakage(self, outputs: dict[str, torch.Tensor] | None = None) -> dict[str, dict[str, dict[str, float]]]:
        """Bias leakage on the test split, per bias attribute, of F's features and of the target features.
        ``outputs``: the test split's :meth:`outputs` when already computed."""
        split = self.splits["test"]
        out = self.outputs(split.inputs) if outputs is None else outputs
        bias = split.bias.cpu()
        return {
            name: {kind: bias_leakage(out[kind], bias[:, k], seed=self.config.seed)
                   for kind in ("features", "target_features")}
            for k, name in enumerate(self.bundle.bias_names)
        }

    def final_evaluation(self) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
        """Metrics of val and test (:meth:`evaluate`) and the bias leakage on test (:meth:`leakage`), from one
        forward pass over each split."""
        outputs = {name: self.outputs(self.splits[name].inputs) for name in ("val", "test")}
        metrics = {name: self.evaluate(name, outputs[name]) for name in ("val", "test")}
        return metrics, self.leakage(outputs["test"])

    # ----- checkpoints
    def state(self, phase: int, epoch: int, history: list, wall: float, result: dict | None) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "method": self.method.state_dict(), "phase": phase, "epoch": epoch,
                "history": history, "wall_time_s": wall, "result": result, "method_name": self.method.name,
                "world_size": distributed.world_size()}

    def save(self, state: dict[str, Any]) -> None:
        """Write the checkpoint (rank 0 only: every rank holds the same state)."""
        if distributed.is_main():
            checkpoint.save_atomic(state, self.checkpoint_path)

    def restore(self) -> tuple[int, int, list, float, dict | None]:
        """Load the checkpoint (read by rank 0 and sent to every rank, so only rank 0 needs the run folder)."""
        state = distributed.from_main(lambda: checkpoint.load(self.checkpoint_path))
        saved_world = state.get("world_size", 1)
        if saved_world != distributed.world_size() and distributed.is_main():
            print(f"note: {self.checkpoint_path} was written by {saved_world} process(es), resumed by "
                  f"{distributed.world_size()}: the rest of the run is not bitwise the uninterrupted one")
        if state.get("method_name") != self.method.name:
            raise ValueError(f"checkpoint {self.checkpoint_path} belongs to method {state.get('method_name')!r}")
        try:
            self.net.load_state_dict(state["net"])
            self.method.load_state_dict(state["method"])
        except (RuntimeError, KeyError) as exc:  # wrong shapes or names: not this run's model
            first = str(exc).strip().splitlines()
            raise ValueError(f"checkpoint {self.checkpoint_path} does not fit this run's model: "
                             f"{' '.join(line.strip() for line in first[:3])}") from None
        return state["phase"], state["epoch"], state["history"], state["wall_time_s"], state["result"]

    # ----- the loop
    def fit(self, *, resume: bool = False, stop_after_epochs: int | None = None) -> RunResult:
        """Run every phase of the method (continuing from the checkpoint when ``resume``), then evaluate."""
        phase0, epoch0, history, wall, result = 0, 0, [], 0.0, None
        if resume and distributed.from_main(self.checkpoint_path.exists):
            phase0, epoch0, history, wall, result = self.restore()
        if result is not None:
            return RunResult(self.method.name, result["metrics"], result["bias_leakage"], history, wall)
        start, done_now = time.perf_counter(), 0
        phases = self.method.phases()
        for p, phase in enumerate(phases):
            if p < phase0 or phase.epochs == 0:
                continue
            first = epoch0 if p == phase0 else 0
            bar = self.progress_bar(phase.name, phase.epochs, first)
            for epoch in range(first, phase.epochs):
                losses = self.run_epoch(p, phase.name, epoch, bar)
                distributed.average_batchnorm_stats(self.net)
                val = self.evaluate("val")
                record = {**losses, f"val_{self.primary}": val[self.primary]}
                history.append({"phase": phase.name, "epoch": epoch + 1, **record})
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items()})
                done_now += 1
                done = epoch + 1 == phase.epochs or plateaued(history, phase)
                last = p == len(phases) - 1 and done
                next_phase, next_epoch = (p + 1, 0) if done else (p, epoch + 1)
                elapsed = wall + time.perf_counter() - start
                if not last:
                    self.save(self.state(next_phase, next_epoch, history, elapsed, None))
                if stop_after_epochs is not None and done_now >= stop_after_epochs and not last:
                    bar.close()
                    raise Interrupted(f"stopped after {done_now} epochs (checkpoint {self.checkpoint_path})")
                if done:
                    break
            bar.close()
        metrics, leakage = self.final_evaluation()
        wall += time.perf_counter() - start
        result = {"metrics": metrics, "bias_leakage": leakage}
        self.save(self.state(len(phases), 0, history, wall, result))
        return RunResult(self.method.name, metrics, leakage, history, wall)

    def run_epoch(self, phase_index: int, phase: str, epoch: int, bar: tqdm) -> dict[str, float]:
        seed = epoch_seed(self.config.seed, phase_index, epoch)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        sums: dict[str, float] = {}
        batches = self.batches(generator)
        for index in batches:
            # every rank's step returns its contributions to the global minibatch's losses; their sum is the loss
            for key, value in distributed.sum_over_ranks(self.method.step(phase, self.batch(index))).items():
                if not math.isfinite(value):
                    raise FloatingPointError(self.diverged(phase, epoch, key, value, index))
                sums[key] = sums.get(key, 0.0) + value
            bar.update(1)
        return {k: v / len(batches) for k, v in sums.items()}

    def diverged(self, phase: str, epoch: int, key: str, value: float, index: torch.Tensor) -> str:
        """The message for a non-finite loss on the train rows ``index``: it blames the data when those rows'
        inputs are not finite, else the step size."""
        where = f"{self.method.name}, phase {phase}, epoch {epoch + 1}: loss {key} is {value}"
        batch = self.splits["train"].subset(index)
        bad = batch.non_finite_rows()
        if bad:
            rows = sorted({int(index[r]) for _, found in bad for r in found})
            return (f"{where} because the inputs are not finite: {len(rows)} rows of the train split of "
                    f"{self.bundle.name} in this minibatch hold NaN or inf (rows {rows[:5]}); the data is corrupt, "
                    "not --lr or --lambda")
        return f"{where}; try a smaller --lr or --lambda"

    def progress_bar(self, phase: str, epochs: int, first: int) -> tqdm:
        per_epoch = self.batches_per_epoch()
        return tqdm(total=epochs * per_epoch, initial=first * per_epoch, desc=f"{self.method.name}: {phase}",
                    unit="batch", disable=not self.show_progress, dynamic_ncols=True)


def plateaued(history: list[dict[str, Any]], phase: Phase) -> bool:
    """Whether ``phase`` (with a ``plateau`` loss) should end: that loss's epoch mean, over this phase's epochs in
    ``history``, improved by less than PLATEAU_TOLERANCE (relative) over the last PLATEAU_EPOCHS epochs."""
    if phase.plateau is None:
        return False
    losses = [h[phase.plateau] for h in history if h["phase"] == phase.name]
    if len(losses) <= PLATEAU_EPOCHS:
        return False
    before, now = losses[-1 - PLATEAU_EPOCHS], losses[-1]
    return before - now < PLATEAU_TOLERANCE * abs(before)


def class_balanced_order(y: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``len(y)`` row indices drawn with replacement, each target class equally likely (``y (n,)`` on the CPU)."""
    counts = torch.bincount(y, minlength=n_classes).clamp_min(1)
    weights = (1.0 / counts.double())[y]
    return torch.multinomial(weights, len(y), replacement=True, generator=generator)


def split_into_batches(order: torch.Tensor, size: int, least: int = 2) -> list[torch.Tensor]:
    """``order`` cut into batches of ``size``; a last batch of fewer than ``least`` samples joins the one before it
    (the estimator compares samples, so a batch needs two; under torchrun each rank's shard does: 2 × ranks)."""
    chunks = list(order.split(size))
    if len(chunks) > 1 and len(chunks[-1]) < least:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks

