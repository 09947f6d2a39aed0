"""Shortcut check: hand features + logistic regression, AUC on the age-confounded val vs the bias-free test split."""

from __future__ import annotations

import torch

from ...metrics import fit_logistic_regression, roc_auc
from ..base import DataBundle
from .reader import SCREEN_POINTS


def hand_features(taps: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-record summary features ``(n,)`` each from ``taps (n, 6, T)`` and ``mask (n, T)``.

    n_taps; mean_interval, cv (of intervals after the first tap); decrement (log of mean interval in the last
    third over the first third); freezes (intervals > 3x the record's median); off_target (share of None taps);
    scatter (mean sd of x and y, in points, over taps on each button).
    """
    m = mask.double()
    n = m.sum(1)
    iv_mask = m.clone()
    iv_mask[:, 0] = 0
    iv = taps[:, 0].double()
    k = iv_mask.sum(1).clamp_min(1)
    mean = (iv * iv_mask).sum(1) / k
    sd = (((iv - mean[:, None]) ** 2 * iv_mask).sum(1) / k).sqrt()
    pos = torch.cumsum(iv_mask, 1) / k[:, None]
    first, last = iv_mask * (pos <= 1 / 3), iv_mask * (pos > 2 / 3)
    dec = ((iv * last).sum(1) / last.sum(1).clamp_min(1)).clamp_min(1e-3).log() - (
        (iv * first).sum(1) / first.sum(1).clamp_min(1)
    ).clamp_min(1e-3).log()
    median = torch.where(iv_mask.bool(), iv, torch.nan).nanmedian(1).values.nan_to_num(0)
    freezes = ((iv > 3 * median[:, None]) & iv_mask.bool()).double().sum(1)
    off = (taps[:, 5].double() * m).sum(1) / n.clamp_min(1)
    scale = torch.tensor(SCREEN_POINTS, dtype=torch.float64)[None, :, None]
    xy = taps[:, 1:3].double() * scale
    scatter = torch.zeros_like(n)
    for b in (3, 4):
        w = taps[:, b].double() * m
        cnt = w.sum(1).clamp_min(1)
        mu = (xy * w[:, None]).sum(2) / cnt[:, None]
        scatter += ((((xy - mu[..., None]) ** 2) * w[:, None]).sum(2) / cnt[:, None]).sqrt().mean(1) / 2
    return {
        "n_taps": n,
        "mean_interval": mean,
        "cv": sd / mean.clamp_min(1e-6),
        "decrement": dec,
        "freezes": freezes,
        "off_target": off,
        "scatter": scatter,
    }


SHORTCUT_MODELS = {
    "age bin only": ("age",),
    "speed only (mean interval, n taps)": ("mean_interval", "n_taps"),
    "PD signs only (cv, decrement, freezes, off-target, scatter)": (
        "cv",
        "decrement",
        "freezes",
        "off_target",
        "scatter",
    ),
    "all hand features": ("mean_interval", "n_taps", "cv", "decrement", "freezes", "off_target", "scatter"),
}
REWEIGHTED_MODEL = "all hand features, age-balanced sample weights"


def _balancing_weights(bias: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sample weights ``(n,)`` giving PD and controls equal total weight within each age bin (bias ``(n,)``)."""
    cell = bias * 2 + y
    counts = torch.bincount(cell, minlength=16).double()
    w = 1 / counts[cell]
    return w * len(w) / w.sum()


def shortcut_check(bundle: DataBundle) -> dict[str, tuple[float, float]]:
    """AUC on (val, test) of logistic regressions (:func:`python.metrics.fit_logistic_regression`) on hand features,
    trained on the train split.

    One model per SHORTCUT_MODELS entry, plus REWEIGHTED_MODEL: all features with sample weights that make PD
    independent of the age bin in training (a reference for what removing the shortcut can reach).
    """
    feats = {}
    for name, split in bundle.splits.items():
        feats[name] = hand_features(*split.inputs) | {"age": split.bias[:, 0].double()}
    train = bundle.splits["train"]
    runs = [(m, cols, None) for m, cols in SHORTCUT_MODELS.items()]
    runs.append((REWEIGHTED_MODEL, SHORTCUT_MODELS["all hand features"], _balancing_weights(train.bias[:, 0], train.y)))
    out = {}
    for model, cols, weight in runs:
        probe = fit_logistic_regression(torch.stack([feats["train"][c] for c in cols], 1), train.y, 2,
                                        sample_weight=weight)
        logits = {s: probe(torch.stack([feats[s][c] for c in cols], 1)) for s in ("val", "test")}
        out[model] = tuple(roc_auc(logits[s][:, 1] - logits[s][:, 0], bundle.splits[s].y) for s in ("val", "test"))
    return out
