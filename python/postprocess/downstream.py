"""The downstream check: a logistic regression on Z before and after, and the bias leakage of each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..deepminmax import as_columns
from ..metrics import bias_leakage, fit_logistic_regression, roc_auc


def discrete_bias(b: torch.Tensor, b_train: torch.Tensor) -> torch.Tensor:
    """``(n, K)`` int labels for leakage: integer B as is, continuous B split at the train median per column."""
    b, b_train = as_columns(b), as_columns(b_train)
    if not b.is_floating_point():
        return b.long()
    return (b > b_train.median(0).values).long()


def evaluate(z_train: torch.Tensor, y_train: torch.Tensor, z_test: torch.Tensor, y_test: torch.Tensor,
             b_test: torch.Tensor, bias_names: Sequence[str], seed: int) -> dict[str, Any]:
    """Downstream accuracy (and AUC when binary) of a logistic regression, and bias leakage per bias column."""
    logits = fit_logistic_regression(z_train, y_train, max(int(y_train.max()) + 1, 2))(z_test)
    out: dict[str, Any] = {"accuracy": float((logits.argmax(-1) == y_test).double().mean())}
    if logits.shape[1] == 2:
        out["auc"] = roc_auc(logits[:, 1] - logits[:, 0], y_test)
    out["bias_leakage"] = {name: bias_leakage(z_test, b_test[:, k], seed=seed) for k, name in enumerate(bias_names)}
    return out
