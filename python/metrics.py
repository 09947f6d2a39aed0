"""Metrics: AUC, AP, F1 and accuracy of the target, and bias leakage of frozen features (DESIGN §5)."""

from __future__ import annotations

import torch
from torch import nn


def roc_auc(scores: torch.Tensor, y: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores (n,)`` for binary ``y (n,)``; ties count one half (Mann-Whitney U)."""
    scores, y = scores.double().flatten(), y.flatten().bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``x`` with tied values sharing their mean rank."""
    order = torch.argsort(x)
    sorted_x = x[order]
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = mean_rank[inverse]
    return ranks


def average_precision(scores: torch.Tensor, y: torch.Tensor) -> float:
    """Average precision (area under the precision-recall curve, step-wise as scikit-learn computes it)."""
    scores, y = scores.double().flatten(), y.flatten().double()
    n_pos = float(y.sum())
    if n_pos == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    s, t = scores[order], y[order]
    last_of_tie = torch.ones_like(s, dtype=torch.bool)
    last_of_tie[:-1] = s[:-1] != s[1:]
    tp = torch.cumsum(t, 0)[last_of_tie]
    predicted = torch.nonzero(last_of_tie).flatten().double() + 1
    precision, recall = tp / predicted, tp / n_pos
    recall_steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((recall_steps * precision).sum())


def f1_score(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """F1 of the positive class for binary ``predicted`` and ``y``."""
    predicted, y = predicted.flatten().bool(), y.flatten().bool()
    tp = int((predicted & y).sum())
    denominator = int(predicted.sum()) + int(y.sum())
    return 2 * tp / denominator if denominator else float("nan")


def balanced_accuracy(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the classes present in ``y`` of the recall of that class."""
    recalls = [float((predicted[y == k] == k).double().mean()) for k in torch.unique(y)]
    return sum(recalls) / len(recalls)


def target_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Metrics of target predictions. ``logits``: ``(n,)`` for two classes (AUC, AP, F1 at p = 0.5, accuracy,
    balanced accuracy), else ``(n, classes)`` (accuracy, balanced accuracy)."""
    if logits.dim() == 1:
        predicted = (logits > 0).long()
        out = {"auc": roc_auc(logits, y), "ap": average_precision(logits, y), "f1": f1_score(predicted, y)}
    else:
        predicted, out = logits.argmax(-1), {}
    out["accuracy"] = float((predicted == y).double().mean())
    out["balanced_accuracy"] = balanced_accuracy(predicted, y)
    return out


def bias_leakage(features: torch.Tensor, bias: torch.Tensor, *, seed: int = 0, folds: int = 2,
                 steps: int = 100) -> dict[str, float]:
    """How well a linear probe predicts one bias attribute from frozen ``features (n, d)``; ``bias (n,)`` int64.

    Logistic regression (standardised features, L2 1e-3, full-batch L-BFGS), cross-fitted over ``folds``
    stratified folds of the given split: every sample is predicted by a probe that never saw it.
    Returns accuracy and balanced accuracy beside their chance levels (majority share, 1 / classes present).
    """
    gen = torch.Generator().manual_seed(seed)
    features, bias = features.double(), bias.long()
    classes, bias_index = torch.unique(bias, return_inverse=True)
    fold = torch.empty_like(bias_index)
    for k in range(len(classes)):
        members = torch.nonzero(bias_index == k).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        fold[members] = torch.arange(len(members)) % folds
    predicted = torch.empty_like(bias_index)
    for f in range(folds):
        train, held_out = fold != f, fold == f
        probe = fit_logistic_regression(features[train], bias_index[train], len(classes), steps=steps)
        predicted[held_out] = probe(features[held_out]).argmax(-1)
    counts = torch.bincount(bias_index, minlength=len(classes))
    return {
        "accuracy": float((predicted == bias_index).double().mean()),
        "chance_accuracy": float(counts.max()) / len(bias_index),
        "balanced_accuracy": balanced_accuracy(predicted, bias_index),
        "chance_balanced_accuracy": 1.0 / len(classes),
        "n": len(bias_index),
    }


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, steps: int = 100) -> nn.Module:
    """Multinomial logistic regression on standardised ``x (n, d)`` float64, ``y (n,)`` in ``0..n_classes-1``
    (L2 1e-3 on the weights, full-batch L-BFGS, ``steps`` iterations at most); returns ``x (m, d) -> logits (m, C)``."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    linear = nn.Linear(x.shape[1], n_classes).double()
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    xs = (x - mean) / std

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(xs), y) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return nn.Sequential(_Standardise(mean, std), linear)


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def within_bin_auc(scores: torch.Tensor, y: torch.Tensor, bins: torch.Tensor) -> float:
    """AUC of ``scores (n,)`` for binary ``y (n,)`` after centring the scores within each bin of ``bins (n,)``
    (subtracting the bin's mean score): what the ranking is worth when nothing that shifts a whole bin counts."""
    scores, bins = scores.double().flatten(), bins.flatten().long()
    if len(bins) != len(scores):
        raise ValueError(f"within_bin_auc: bins has {len(bins)} entries, scores {len(scores)}")
    _, cell = torch.unique(bins, return_inverse=True)
    means = torch.zeros(int(cell.max()) + 1, dtype=torch.float64).index_add_(0, cell, scores)
    means /= torch.bincount(cell).double()
    return roc_auc(scores - means[cell], y)
