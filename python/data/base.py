"""What every dataset loader returns: tensors per split plus what the trainer must know about the task."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field

import torch

SPLITS = ("train", "val", "test")
EXAMPLES_PER_LINE = 3
FINITE_CHECK_ROWS = 4096  # rows per chunk when checking inputs for non-finite values (bounds the temporaries)


def split_sizes(splits: Mapping[str, Sized]) -> str:
    """``"<train>/<val>/<test>"``: the number of rows of each split."""
    return "/".join(str(len(splits[name])) for name in SPLITS)


def loses_rows(line: str) -> bool:
    """Whether a load-report line says input was lost: its label (before the first ':') says skipped or dropped."""
    label = line.split(":")[0]
    return "skipped" in label or "dropped" in label


def log_report(lines: Sequence[str], logger: logging.Logger, warn: Callable[[str], bool] = loses_rows) -> None:
    """Logs a loader's report, each line where ``warn`` says so as a warning, the others as info."""
    for line in lines:
        (logger.warning if warn(line) else logger.info)(line)


class Tally:
    """Counts per reason (something skipped or changed by a loader) with the first few examples (file and line,
    or record id), for ``DataBundle.log``: nothing is dropped without a count."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, example: str, count: int = 1) -> None:
        self.add_many(reason, [example], count)

    def add_many(self, reason: str, examples: Sequence[str], count: int) -> None:
        """Adds ``count`` to ``reason`` with the first few of ``examples``."""
        if count:
            self.counts[reason] = self.counts.get(reason, 0) + count
            shown = self.examples.setdefault(reason, [])
            shown.extend(examples[: max(0, EXAMPLES_PER_LINE - len(shown))])

    def lines(self) -> list[str]:
        return [f"{reason}: {n} (e.g. {'; '.join(self.examples[reason])})" for reason, n in self.counts.items()]


@dataclass
class Split:
    """One split of a dataset, all tensors on the CPU with the same first dim ``n``.

    inputs: the stored inputs, from which the bundle's ``to_model_input`` makes what the feature extractor F takes,
        one minibatch at a time: e.g. ``(x (n, 41),)`` for Adult or ``(taps (n, C, T), mask (n, T))`` for mPower
        (F takes them as they are); ``(images (n, 3, S, S) uint8,)`` for CelebA and IMDB (F takes them normalised
        to float32) and ``(grey (n, 1, 28, 28) uint8, colours (n, 3) float32)`` for Colored MNIST (F takes the
        painted images ``(n, 3, 28, 28)`` float32).
    y: ``(n,)`` int64 target labels. bias: ``(n, K)`` int64 bias labels, one column per bias head.
    """

    inputs: tuple[torch.Tensor, ...]
    y: torch.Tensor
    bias: torch.Tensor

    def __post_init__(self) -> None:
        n = self.y.shape[0]
        if self.y.dim() != 1 or self.bias.dim() != 2 or self.bias.shape[0] != n:
            raise ValueError(f"Split needs y (n,) and bias (n, K), got {tuple(self.y.shape)}, {tuple(self.bias.shape)}")
        for i, x in enumerate(self.inputs):
            if x.shape[0] != n:
                raise ValueError(f"Split input {i} has {x.shape[0]} rows, expected {n}")

    def __len__(self) -> int:
        return self.y.shape[0]

    def subset(self, index: torch.Tensor) -> Split:
        return Split(tuple(x[index] for x in self.inputs), self.y[index], self.bias[index])

    def non_finite_rows(self) -> list[tuple[int, torch.Tensor]]:
        """``(input index, rows (k,))`` for each floating-point input holding NaN or +-inf in some rows (k > 0)."""
        out = []
        for i, x in enumerate(self.inputs):
            if not x.is_floating_point():
                continue
            bad = []
            for start in range(0, len(x), FINITE_CHECK_ROWS):
                chunk = x[start:start + FINITE_CHECK_ROWS]
                finite = torch.isfinite(chunk).reshape(len(chunk), -1).all(1)
                bad.append(torch.nonzero(~finite).flatten().cpu() + start)
            rows = torch.cat(bad) if bad else torch.empty(0, dtype=torch.long)
            if len(rows):
                out.append((i, rows))
        return out


ToModelInput = Callable[[tuple[torch.Tensor, ...], torch.device], tuple[torch.Tensor, ...]]
"""``to_model_input(inputs, device) -> what F takes`` (:class:`DataBundle`)."""
ExtraMetrics = Callable[[tuple[torch.Tensor, ...], Split], dict[str, float]]
"""``extra_metrics(logits, split) -> {name: value}`` (:class:`DataBundle`)."""
Counterfactuals = Callable[[Split], list[tuple[torch.Tensor, ...]]]
"""``counterfactuals(split) -> [inputs shaped like split.inputs, ...]`` (:class:`DataBundle`)."""


def inputs_to_device(inputs: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The default ``DataBundle.to_model_input``: stored rows that are what F takes already (tables, taps), each
    ``(b, ...)`` moved to ``device``."""
    return tuple(x.to(device) for x in inputs)


@dataclass
class DataBundle:
    """A loaded dataset.

    name: dataset name (``mpower``, ``adult``, ...). data_source: ``"real"`` or ``"simulated"`` (or
    ``"embedded"`` for a shipped real subset). description: one line for the console and metrics.json.
    n_classes: number of target classes (2 means one logit and BCE). bias_classes: classes per bias head.
    bias_names: a name per bias head. tolerance: Ω tolerance on the bias labels (DESIGN §2).
    test_is_bias_free: whether the test split decorrelates bias and target. log: what the loader
    dropped or changed and how many, shown on the console and stored in metrics.json. extra_metrics: dataset
    metrics beyond the target's, ``extra_metrics(logits, split) -> {name: value}``: the trainer computes the
    target logits once per evaluated split and passes them, ``logits[0]`` those of ``split.inputs`` (``(n,)`` for
    two classes, else ``(n, classes)``) and ``logits[1 + i]`` those of ``counterfactuals(split)[i]``; the metrics
    come from these logits alone (``python.metrics.predicted_classes`` gives the predicted classes), the data
    layer never runs the model. counterfactuals: ``counterfactuals(split) -> [inputs, ...]``, copies of
    ``split.inputs`` (each a tuple shaped like it, the same ``n`` rows) whose logits ``extra_metrics`` also needs,
    e.g. Adult's spouse and gender/race copies; None: none. to_model_input: ``to_model_input(inputs, device)``
    turns rows of a split's stored ``inputs`` (a minibatch, each tensor ``(b, ...)`` on the CPU) into what F takes,
    on ``device``; the one place where stored data becomes the model's (images: uint8 -> normalised float32, see
    :mod:`python.data.images`). The trainer calls it on every minibatch it trains or evaluates on, so whole splits
    stay on the CPU; default :func:`inputs_to_device`. within_bin_head: a bias head whose bins give the metric
    ``within_bin_auc`` (the score centred within each bin, then AUC; mPower: age), or None.
    """

    name: str
    data_source: str
    description: str
    splits: dict[str, Split]
    n_classes: int
    bias_classes: tuple[int, ...]
    bias_names: tuple[str, ...]
    tolerance: int = 0
    test_is_bias_free: bool = True
    log: list[str] = field(default_factory=list)
    extra_metrics: ExtraMetrics | None = None
    counterfactuals: Counterfactuals | None = None
    to_model_input: ToModelInput = inputs_to_device
    within_bin_head: int | None = None

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"DataBundle {self.name!r} lacks splits {missing}")
        if self.data_source not in ("real", "simulated", "embedded"):
            raise ValueError(f"data_source must be 'real', 'simulated' or 'embedded', got {self.data_source!r}")
        if len(self.bias_classes) != len(self.bias_names):
            raise ValueError("bias_classes and bias_names must have one entry per bias head")
        for name in SPLITS:
            for i, rows in self.splits[name].non_finite_rows():
                raise ValueError(f"{self.name}: input {i} of the {name} split holds non-finite values after "
                                 f"preprocessing in {len(rows)} rows (first: {rows[:5].tolist()}); the loader must "
                                 "drop or reject such records")
