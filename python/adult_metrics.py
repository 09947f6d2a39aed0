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


def spouse_copies(x: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES) -> list[torch.Tensor]:
    """S-Con's two copies of ``x (n, F)``: every ``relationship_*`` column zeroed, then ``relationship_Husband = 1``
    in the first copy and ``relationship_Wife = 1`` in the second."""
    relationship = [i for i, name in enumerate(feature_names) if name.startswith("relationship_")]
    husband, wife = _column(feature_names, "relationship_Husband"), _column(feature_names, "relationship_Wife")
    return [_with_columns(x, relationship, [husband]), _with_columns(x, relationship, [wife])]


def gender_race_copies(x: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES) -> list[torch.Tensor]:
    """GR-Con's four copies of ``x (n, F)``: (sex_Male, race_White) set to (0, 0), (1, 0), (0, 1), (1, 1)."""
    sex, race = _column(feature_names, "sex_Male"), _column(feature_names, "race_White")
    return [_with_columns(x, [sex, race], one) for one in ([], [sex], [race], [sex, race])]


def counterfactual_copies(x: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES) -> list[torch.Tensor]:
    """The six copies of ``x (n, F)`` whose predictions the consistencies compare: :func:`spouse_copies`, then
    :func:`gender_race_copies`."""
    return [*spouse_copies(x, feature_names), *gender_race_copies(x, feature_names)]


def agreement(predicted: Sequence[torch.Tensor]) -> float:
    """Share of samples predicted alike in every one of ``predicted`` (each ``(n,)``)."""
    same = torch.ones_like(predicted[0], dtype=torch.bool)
    for p in predicted[1:]:
        same &= p == predicted[0]
    return float(same.double().mean())


def spouse_consistency(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES
) -> float:
    """S-Con of ``predict`` on ``x (n, F)``: share of samples predicted alike as Husband and as Wife (see module)."""
    return agreement([_predict(predict, copy) for copy in spouse_copies(x, feature_names)])


def gender_race_consistency(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES
) -> float:
    """GR-Con of ``predict`` on ``x (n, F)``: share of samples with one prediction for all four (sex, race)."""
    return agreement([_predict(predict, copy) for copy in gender_race_copies(x, feature_names)])


def _check_shapes(x: torch.Tensor, y: torch.Tensor, feature_names: Sequence[str]) -> None:
    if x.dim() != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"x must be (n, {len(feature_names)}) to match feature_names, got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must be ({x.shape[0]},) to match x, got {tuple(y.shape)}")


def metrics_from_predictions(
    predicted: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, feature_names: Sequence[str] = ADULT_FEATURES
) -> dict[str, float]:
    """The Adult metrics (:data:`METRIC_KEYS`) from 0/1 predictions, seven ``(n,)`` tensors: of ``x (n, F)`` itself,
    then of its :func:`counterfactual_copies` in their order. y: ``(n,)`` 0/1 labels."""
    _check_shapes(x, y, feature_names)
    if len(predicted) != 7:
        raise ValueError(f"need the predictions of x and of its 6 counterfactual copies, got {len(predicted)}")
    predicted = [p.detach().cpu().long() for p in predicted]
    y = y.detach().cpu().long()
    tpr, tnr = _rates(predicted[0], y)
    out = {"balanced_accuracy": 0.5 * (tpr + tnr), "s_con": agreement(predicted[1:3]),
           "gr_con": agreement(predicted[3:7])}
    for attribute, column in (("gender", "sex_Male"), ("race", "race_White")):
        group = x[:, _column(feature_names, column)].detach().cpu().round().long()
        out[f"gap_rms_{attribute}"], out[f"gap_max_{attribute}"] = group_gaps(predicted[0], y, group)
    return {k: out[k] for k in METRIC_KEYS}


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
    _check_shapes(x, y, feature_names)
    views = [x, *counterfactual_copies(x, feature_names)]
    return metrics_from_predictions([_predict(predict, v) for v in views], x, y, feature_names)
