"""Adult metrics of SenSR (Yurochkin et al. 2020): balanced accuracy, S-Con, GR-Con, GapRMS and Gapmax (DESIGN §4).

Counterfactual consistencies follow SenSR's ``get_consistency`` exactly:

* S-Con (spouse consistency): two copies of every sample, all ``relationship_*`` one-hot columns zeroed and then
  ``relationship_Husband = 1`` in one copy, ``relationship_Wife = 1`` in the other; sex and everything else
  unchanged. Every sample counts, whatever its own relationship. S-Con = share of samples whose two predictions
  agree.
* GR-Con (gender/race consistency): four copies with (sex_Male, race_White) set to (0, 0), (1, 0), (0, 1), (1, 1);
  share of samples with one prediction for all four. The one-hot columns are 0/1 (only the continuous features are
  standardised), so setting them to 0 or 1 is a valid input.

Gaps compare the group with the attribute set (sex_Male = 1, race_White = 1) against the rest:
GapRMS = sqrt(½ (ΔTPR² + ΔTNR²)), Gapmax = max(|ΔTPR|, |ΔTNR|). A rate over an empty set (no positives or no
negatives in a group) is NaN, and so are the metrics built on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .data.adult import ADULT_FEATURES
from .metrics import binary_rates

METRIC_KEYS = (
    "balanced_accuracy",
    "s_con",
    "gr_con",
    "gap_rms_gender",
    "gap_rms_race",
    "gap_max_gender",
    "gap_max_race",
)


def _column(names: Sequence[str], name: str) -> int:
    try:
        return list(names).index(name)
    except ValueError:
        raise ValueError(f"feature_names lacks {name!r} (needed by the Adult metrics)") from None


def _predict(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``predict(x)`` as a CPU int64 ``(n,)`` tensor of 0/1; ValueError when it returns anything else."""
    out = torch.as_tensor(predict(x)).detach().cpu()
    if out.shape != (x.shape[0],):
        raise ValueError(f"predict must return labels of shape ({x.shape[0]},), got {tuple(out.shape)}")
    if out.is_floating_point() and not torch.equal(out, out.round()):
        raise ValueError("predict must return 0/1 labels, got non-integer values")
    out = out.long()
    if not bool(((out == 0) | (out == 1)).all()):
        raise ValueError("predict must return 0/1 labels")
    return out


def _rates(predicted: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(TPR, TNR) of 0/1 ``predicted`` against ``y`` (both ``(n,)``); NaN where a class is absent."""
    rates = binary_rates(y, predicted)
    return rates["tpr"], 1.0 - rates["fpr"]


def group_gaps(predicted: torch.Tensor, y: torch.Tensor, group: torch.Tensor) -> tuple[float, float]:
    """(GapRMS, Gapmax) between ``group == 1`` and ``group == 0`` for 0/1 ``predicted``, ``y``, ``group`` ``(n,)``."""
    tpr1, tnr1 = _rates(predicted[group == 1], y[group == 1])
    tpr0, tnr0 = _rates(predicted[group == 0], y[group == 0])
    d_tpr, d_tnr = tpr1 - tpr0, tnr1 - tnr0
    return math.sqrt(0.5 * (d_tpr**2 + d_tnr**2)), max(abs(d_tpr), abs(d_tnr))


def _with_columns(x: torch.Tensor, zero: Sequence[int], one: Sequence[int]) -> torch.Tensor:
    """A copy of ``x (n, F)`` with columns ``zero`` set to 0 and then columns ``one`` set to 1."""
    out = x.clone()
    out[:, list(zero)] = 0
    out[:, list(one)] = 1
    return out


def spouse_consistency(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES
) -> float:
    """S-Con of ``predict`` on ``x (n, F)``: share of samples predicted alike as Husband and as Wife (see module)."""
    relationship = [i for i, name in enumerate(feature_names) if name.startswith("relationship_")]
    husband, wife = _column(feature_names, "relationship_Husband"), _column(feature_names, "relationship_Wife")
    as_husband = _predict(predict, _with_columns(x, relationship, [husband]))
    as_wife = _predict(predict, _with_columns(x, relationship, [wife]))
    return float((as_husband == as_wife).double().mean())


def gender_race_consistency(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES
) -> float:
    """GR-Con of ``predict`` on ``x (n, F)``: share of samples with one prediction for all four (sex, race)."""
    sex, race = _column(feature_names, "sex_Male"), _column(feature_names, "race_White")
    preds = [_predict(predict, _with_columns(x, [sex, race], one)) for one in ([], [sex], [race], [sex, race])]
    same = torch.ones_like(preds[0], dtype=torch.bool)
    for p in preds[1:]:
        same &= p == preds[0]
    return float(same.double().mean())


def adult_metrics(
    predict: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    feature_names: Sequence[str] = ADULT_FEATURES,
) -> dict[str, float]:
    """The Adult metrics (:data:`METRIC_KEYS`) of a classifier.

    predict: maps ``x (m, F)`` to predicted labels ``(m,)`` 0/1 (called 7 times: x itself, 2 spouse and 4
    gender/race copies). x: ``(n, F)`` features, one-hot columns 0/1, named by ``feature_names`` (needs
    relationship_Husband, relationship_Wife, sex_Male, race_White). y: ``(n,)`` 0/1 labels.
    """
    if x.dim() != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"x must be (n, {len(feature_names)}) to match feature_names, got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must be ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    y = y.detach().cpu().long()
    predicted = _predict(predict, x)
    tpr, tnr = _rates(predicted, y)
    out = {"balanced_accuracy": 0.5 * (tpr + tnr)}
    out["s_con"] = spouse_consistency(predict, x, feature_names)
    out["gr_con"] = gender_race_consistency(predict, x, feature_names)
    for attribute, column in (("gender", "sex_Male"), ("race", "race_White")):
        group = x[:, _column(feature_names, column)].detach().cpu().round().long()
        out[f"gap_rms_{attribute}"], out[f"gap_max_{attribute}"] = group_gaps(predicted, y, group)
    return {k: out[k] for k in METRIC_KEYS}
