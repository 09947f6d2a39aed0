"""Metrics: AUC, AP, F1, balanced accuracy (scikit-learn's) and accuracy of the target, bias leakage of frozen
features (DESIGN §5), and group fairness (per-group rates, demographic parity and equalized odds differences) with
fairlearn's signature."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _ranks(scores: torch.Tensor) -> np.ndarray:
    """Dense ranks of ``scores`` (ties share one): AUC and AP depend only on the order and the ties, and the ranks
    keep ±inf scores (a probe's logit of a class absent from its training labels) valid for scikit-learn."""
    return torch.unique(scores.detach().cpu().double().flatten(), return_inverse=True)[1].numpy()


def roc_auc(scores: torch.Tensor, y: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores (n,)`` for binary ``y (n,)`` (nonzero: positive), ties counting one half
    (scikit-learn's ``roc_auc_score``); NaN when ``y`` holds one class only."""
    from sklearn.metrics import roc_auc_score

    positive = y.detach().cpu().flatten().bool()
    if bool(positive.all()) or not bool(positive.any()):
        return float("nan")
    return float(roc_auc_score(positive.long().numpy(), _ranks(scores)))


def average_precision(scores: torch.Tensor, y: torch.Tensor) -> float:
    """Average precision (area under the precision-recall curve, step-wise: scikit-learn's
    ``average_precision_score``) of ``scores (n,)`` for 0/1 ``y (n,)``; NaN without a positive."""
    from sklearn.metrics import average_precision_score

    positive = y.detach().cpu().flatten().bool()
    if not bool(positive.any()):
        return float("nan")
    return float(average_precision_score(positive.long().numpy(), _ranks(scores)))


def f1_score(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """F1 of the positive class for binary ``predicted`` and ``y`` (scikit-learn's ``f1_score``); NaN when neither
    predicts nor holds a positive."""
    from sklearn.metrics import f1_score as sklearn_f1

    predicted, y = predicted.detach().cpu().flatten().bool(), y.detach().cpu().flatten().bool()
    if not bool(predicted.any()) and not bool(y.any()):
        return float("nan")
    return float(sklearn_f1(y.long().numpy(), predicted.long().numpy()))


def balanced_accuracy(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the classes present in ``y`` of the recall of that class (scikit-learn's
    ``balanced_accuracy_score``; a class predicted but absent from ``y`` does not count)."""
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        return float(balanced_accuracy_score(y.detach().cpu().flatten().numpy(),
                                             predicted.detach().cpu().flatten().numpy()))


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """Predicted classes ``(n,)`` int64 of target logits: ``(n,)`` for two classes (class 1 where the logit is
    positive), else ``(n, classes)`` (the argmax)."""
    return (logits > 0).long() if logits.dim() == 1 else logits.argmax(-1)


def target_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Metrics of target predictions. ``logits``: ``(n,)`` for two classes (AUC, AP, F1 at p = 0.5, accuracy,
    balanced accuracy), else ``(n, classes)`` (accuracy, balanced accuracy)."""
    predicted = predicted_classes(logits)
    if logits.dim() == 1:
        out = {"auc": roc_auc(logits, y), "ap": average_precision(logits, y), "f1": f1_score(predicted, y)}
    else:
        out = {}
    out["accuracy"] = float((predicted == y).double().mean())
    out["balanced_accuracy"] = balanced_accuracy(predicted, y)
    return out


def bias_leakage(features: torch.Tensor, bias: torch.Tensor, *, seed: int = 0, folds: int = 2) -> dict[str, float]:
    """How well a linear probe predicts one bias attribute from frozen ``features (n, d)``; ``bias (n,)`` int64.

    The probe is :func:`fit_logistic_regression` (deterministic and converged), cross-fitted over ``folds``
    stratified folds drawn with ``seed``: every sample is predicted by a probe that never saw it. The result
    depends only on the arguments, not on any global RNG. Returns accuracy and balanced accuracy beside their
    chance levels (majority share, 1 / classes present).
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
        probe = fit_logistic_regression(features[train], bias_index[train], len(classes))
        predicted[held_out] = probe(features[held_out]).argmax(-1)
    counts = torch.bincount(bias_index, minlength=len(classes))
    return {
        "accuracy": float((predicted == bias_index).double().mean()),
        "chance_accuracy": float(counts.max()) / len(bias_index),
        "balanced_accuracy": balanced_accuracy(predicted, bias_index),
        "chance_balanced_accuracy": 1.0 / len(classes),
        "n": len(bias_index),
    }


PROBE_L2 = 1e-3  # L2 weight of the probe: mean cross-entropy + PROBE_L2 * ||W||^2
PROBE_TOL = 1e-8  # the solver stops when the largest gradient entry of that objective is below this
PROBE_MAX_ITER = 10_000
# Newton-CG: the same optimum as L-BFGS, 2-3x faster on wide, nearly separable features (1,024 features of 500
# Colored MNIST digits: 25 iterations against L-BFGS's 2,196)
PROBE_SOLVER = "newton-cg"


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, n_classes: int | None = None, *,
                            l2: float = PROBE_L2, sample_weight: torch.Tensor | None = None,
                            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logistic regression (scikit-learn's Newton-CG, run to convergence) on standardised ``x (n, d)`` with labels
    ``y (n,)`` in ``0..n_classes-1`` (default ``y.max() + 1``) and optional ``sample_weight (n,)``.

    Objective: ``(1/n) sum_i w_i CE_i + l2 * ||W||^2`` (intercept not penalised); deterministic given the
    data. Returns ``x (m, d) -> logits (m, n_classes)`` float64; a class absent from ``y`` gets logit -inf, and with
    two classes present the logits are ``(0, s)``, ``s`` the log-odds. RuntimeError when the solver does not converge.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_np, y_np = x.detach().cpu().double().numpy(), y.detach().cpu().long().numpy()
    n_classes = int(y_np.max()) + 1 if n_classes is None else n_classes
    weight = None if sample_weight is None else sample_weight.detach().cpu().double().numpy()
    present = np.unique(y_np)
    if len(present) == 1:  # nothing to fit: every sample gets the one class seen
        return lambda v: torch.where(torch.arange(n_classes) == int(present[0]), 0.0, -math.inf).double().expand(
            len(v), n_classes).clone()
    # scikit-learn minimises C * sum_i w_i CE_i + ||W||^2 / 2, i.e. (n C) times our objective when C = 1 / (2 n l2)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0 / (2 * len(y_np) * l2), tol=PROBE_TOL,
                                                               max_iter=PROBE_MAX_ITER,
                                                               solver=PROBE_SOLVER))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            probe.fit(x_np, y_np, logisticregression__sample_weight=weight)
        except ConvergenceWarning as exc:
            raise RuntimeError(f"logistic-regression probe did not converge in {PROBE_MAX_ITER} iterations "
                               f"({x_np.shape[0]} samples, {x_np.shape[1]} features): {exc}") from None
    classes = torch.from_numpy(probe.classes_.astype(np.int64))

    def logits(v: torch.Tensor) -> torch.Tensor:
        scores = torch.from_numpy(probe.decision_function(v.detach().cpu().double().numpy()))
        if len(classes) == 2:
            scores = torch.stack([torch.zeros_like(scores), scores], 1)
        out = torch.full((len(scores), n_classes), -math.inf, dtype=torch.float64)
        out[:, classes] = scores.reshape(len(scores), -1)
        return out

    return logits


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


# ----- group fairness with fairlearn's signature: f(y_true, y_pred, *, sensitive_features=...)

GROUP_COLUMNS = ("count", "selection_rate", "accuracy", "tpr", "fpr")


def binary_labels(values: Any, name: str) -> np.ndarray:
    """``values`` (a list, numpy array, pandas Series or torch tensor of 0/1, True/False or 0.0/1.0) as a 1-d int64
    array; ValueError naming ``name`` when it is not 1-d or holds anything else."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d (one label per sample), got shape {array.shape}")
    try:
        numeric = array.astype(np.float64)
    except (TypeError, ValueError):
        numeric = None
    if numeric is None or not np.isin(numeric, (0.0, 1.0)).all():
        found = list(dict.fromkeys(array.tolist()))
        raise ValueError(f"{name} must hold binary labels 0/1 (or True/False), got {len(found)} distinct values "
                         f"{found[:6]}{' ...' if len(found) > 6 else ''}")
    return numeric.astype(np.int64)


def _label_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = binary_labels(y_true, "y_true"), binary_labels(y_pred, "y_pred")
    if len(p) != len(t):
        raise ValueError(f"y_pred has {len(p)} entries, y_true {len(t)}: one prediction per sample")
    return t, p


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def _rates(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import confusion_matrix

    n = len(t)
    tn, fp, fn, tp = confusion_matrix(t, p, labels=[0, 1]).ravel().tolist() if n else (0, 0, 0, 0)
    return {"count": n, "selection_rate": _ratio(tp + fp, n), "accuracy": _ratio(tp + tn, n),
            "tpr": _ratio(tp, tp + fn), "fpr": _ratio(fp, fp + tn)}


def binary_rates(y_true: Any, y_pred: Any) -> dict[str, float]:
    """count, selection rate P(ŷ=1), accuracy, TPR P(ŷ=1 | y=1) and FPR P(ŷ=1 | y=0) of 0/1 predictions ``y_pred``
    against 0/1 ``y_true`` (scikit-learn's confusion matrix); a rate over an empty set (no positives: TPR, no
    negatives: FPR, no samples) is NaN."""
    return _rates(*_label_pair(y_true, y_pred))


def sensitive_frame(sensitive_features: Any, n: int) -> Any:
    """``sensitive_features`` as a pandas DataFrame of ``n`` rows, one column per feature: a DataFrame or dict keeps
    its names, a Series its name, a list or 1-d / 2-d array (or tensor) gets ``sensitive_feature_0``, ... as
    fairlearn names them. ValueError naming the argument for a wrong number of rows or a missing value."""
    import pandas as pd

    features = sensitive_features
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    if isinstance(features, pd.DataFrame):
        frame = features.reset_index(drop=True)
    elif isinstance(features, pd.Series):
        frame = features.reset_index(drop=True).to_frame(features.name if features.name is not None
                                                         else "sensitive_feature_0")
    elif isinstance(features, dict):
        frame = pd.DataFrame({k: np.asarray(v) for k, v in features.items()})
    else:
        array = np.asarray(features)
        if array.ndim not in (1, 2):
            raise ValueError(f"sensitive_features must be 1-d or 2-d (samples x features), got shape {array.shape}")
        array = array.reshape(len(array), -1)
        frame = pd.DataFrame({f"sensitive_feature_{k}": array[:, k] for k in range(array.shape[1])})
    if frame.shape[1] == 0:
        raise ValueError("sensitive_features has no columns: give at least one sensitive feature")
    if len(frame) != n:
        raise ValueError(f"sensitive_features has {len(frame)} rows, y_true {n}: one group per sample")
    for column in frame.columns:
        missing = int(frame[column].isna().sum())
        if missing:
            raise ValueError(f"sensitive_features column {column!r} has {missing} missing values: every sample "
                             "needs a group")
    return frame


def fairness_by_group(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> Any:
    """A pandas DataFrame with one row per group (like fairlearn's ``MetricFrame.by_group``) and the columns
    :data:`GROUP_COLUMNS`: count, selection rate, accuracy, TPR and FPR of 0/1 ``y_pred`` against 0/1 ``y_true``.

    ``sensitive_features``: one value per sample (list, array, Series) or several features (a DataFrame, dict or
    2-d array): the groups are the combinations of values that occur, indexed by a MultiIndex named after the
    features. A rate a group cannot have (TPR without positives, FPR without negatives) is NaN."""
    import pandas as pd

    t, p = _label_pair(y_true, y_pred)
    frame = sensitive_frame(sensitive_features, len(t))
    names = list(frame.columns)
    groups = frame.groupby(names, sort=True).indices
    keys = [key if isinstance(key, tuple) else (key,) for key in groups]
    rows = [_rates(t[index], p[index]) for index in groups.values()]
    index = (pd.MultiIndex.from_tuples(keys, names=names) if len(names) > 1
             else pd.Index([key[0] for key in keys], name=names[0]))
    return pd.DataFrame(rows, index=index, columns=list(GROUP_COLUMNS))


def _spread(values: Any) -> float:
    """max - min over the groups, skipping NaN (NaN when no group has the rate)."""
    return float(values.max() - values.min())


def demographic_parity_difference(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """Largest minus smallest selection rate P(ŷ=1 | group) over the groups (fairlearn's definition); 0 is parity."""
    return _spread(fairness_by_group(y_true, y_pred, sensitive_features=sensitive_features)["selection_rate"])


def equalized_odds_difference(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """The larger of the TPR difference and the FPR difference, each the largest minus the smallest over the groups
    (fairlearn's definition). A group without positives (negatives) has no TPR (FPR) and is left out of that
    difference; fairlearn counts its rate as 0 instead."""
    table = fairness_by_group(y_true, y_pred, sensitive_features=sensitive_features)
    return float(np.fmax(_spread(table["tpr"]), _spread(table["fpr"])))
