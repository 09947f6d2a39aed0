"""CSAD as a scikit-learn classifier: :class:`CSADClassifier`.

``CSADClassifier().fit(X, y, sensitive_features=S)`` trains an MLP with CSAD so that its target features carry as
little information about the sensitive features S as the cross-sample estimator can detect; ``predict``,
``predict_proba`` and ``score`` need X only. The network is the project's tabular model (the one
``--dataset adult``/``csv`` trains): F = Linear(d, ``hidden``) + ReLU, branches Linear(``hidden``, ``branch_dim``) +
ReLU, one Linear per predictor, the estimator's heads (``branch_dim``, 32, 32); it is trained by
:class:`python.debiaser.Debiaser` (Algorithm 2, the schedule of ``python.methods.csad``) on class-balanced
minibatches, as the CLI draws them.

* X: numbers, numpy or pandas (standardised with the training mean and sd unless ``standardize=False``); encode
  text columns first, e.g. with a ``ColumnTransformer`` in a ``Pipeline``.
* sensitive_features: ``(n,)`` or ``(n, k)``, numpy, pandas Series or DataFrame, one bias head per column. A numeric
  column with more than 10 distinct values is cut into ``sensitive_bins`` quantile bins; anything else (text,
  categories, few numbers) is coded one class per value, as ``--dataset csv`` codes its bias columns.
  ``sensitive_features=None`` trains the same network without debiasing (the CLI's baseline: the target phase
  alone, ``pretrain_epochs + epochs`` epochs) and warns; it keeps the estimator usable where scikit-learn calls
  ``fit(X, y)`` alone (``cross_val_score`` without fit parameters, the estimator checks).
* device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .data.csv_table import code_bias
from .debiaser import Debiaser
from .models import DenseFeatures
from .trainer import class_balanced_order, split_into_batches


class BalancedBatches:
    """Minibatches ``(x, y, bias)`` of one epoch per iteration, drawn as the CLI draws them: rows with replacement,
    each class equally likely (``balanced``), else a permutation; a new draw every epoch from ``generator``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor, batch_size: int, balanced: bool,
                 n_classes: int, generator: torch.Generator) -> None:
        self.x, self.y, self.bias, self.batch_size = x, y, bias, batch_size
        self.balanced, self.n_classes, self.generator = balanced, n_classes, generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.balanced:
            order = class_balanced_order(self.y, self.n_classes, self.generator)
        else:
            order = torch.randperm(len(self.y), generator=self.generator)
        for index in split_into_batches(order, self.batch_size):
            yield self.x[index], self.y[index], self.bias[index]


def sensitive_codes(sensitive: Any, n: int, bins: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Integer codes ``(n, k)`` of the sensitive features (one column per attribute) and the classes of each."""
    import pandas as pd

    if isinstance(sensitive, pd.Series):
        frame = sensitive.to_frame()
    elif isinstance(sensitive, pd.DataFrame):
        frame = sensitive
    else:
        array = np.asarray(sensitive)
        frame = pd.DataFrame(array.reshape(len(array), -1) if array.ndim > 1 else {"sensitive": array})
    if len(frame) != n:
        raise ValueError(f"sensitive_features has {len(frame)} rows, X has {n}")
    columns = []
    for name in frame.columns:
        values = frame[name].reset_index(drop=True)
        if values.isna().any():
            raise ValueError(f"sensitive feature {name!r} holds missing values")
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        codes, _ = code_bias(values, values.to_numpy(np.float64) if numeric else None, np.arange(n), bins, str(name))
        if codes.max() < 1:
            raise ValueError(f"sensitive feature {name!r} has a single value: nothing to debias")
        columns.append(codes)
    codes = np.stack(columns, 1)
    return codes, tuple(int(c.max()) + 1 for c in columns)


class CSADClassifier(ClassifierMixin, BaseEstimator):
    """An MLP classifier trained with CSAD against the ``sensitive_features`` given to :meth:`fit` (module
    docstring). Parameters as :class:`python.debiaser.Debiaser` and the CLI's flags of the same names; ``hidden``:
    width of F; ``random_state``: seeds initialisation and minibatches (the global torch RNG is left as it was)."""

    def __init__(self, *, hidden: int = 64, branch_dim: int = 32, method: str = "csad", conditional: bool = False,
                 lambda_: float = 10.0, k_inner: int = 10, pretrain_epochs: int = 5, bias_epochs: int = 1,
                 estimator_epochs: int = 1, epochs: int = 5, batch_size: int = 128, lr: float = 1e-3,
                 estimator_lr: float | None = None, weight_decay: float = 0.0, balanced_batches: bool = True,
                 standardize: bool = True, sensitive_bins: int = 4, backend: str = "auto", device: str = "cpu",
                 random_state: int | None = None) -> None:
        self.hidden = hidden
        self.branch_dim = branch_dim
        self.method = method
        self.conditional = conditional
        self.lambda_ = lambda_
        self.k_inner = k_inner
        self.pretrain_epochs = pretrain_epochs
        self.bias_epochs = bias_epochs
        self.estimator_epochs = estimator_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.estimator_lr = estimator_lr
        self.weight_decay = weight_decay
        self.balanced_batches = balanced_batches
        self.standardize = standardize
        self.sensitive_bins = sensitive_bins
        self.backend = backend
        self.device = device
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sensitive_features: Any = None) -> CSADClassifier:
        """Train on ``X (n, d)`` and labels ``y (n,)`` against ``sensitive_features`` (``(n,)`` or ``(n, k)``;
        None: no debiasing, with a warning)."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y holds one class ({self.classes_[0]!r}): a classifier needs 2 classes or more")
        if sensitive_features is None:
            warnings.warn("CSADClassifier.fit without sensitive_features: trained without debiasing (the baseline)",
                          UserWarning, stacklevel=2)
            bias, bias_classes = np.zeros((len(X), 1), np.int64), (2,)
        else:
            bias, bias_classes = sensitive_codes(sensitive_features, len(X), self.sensitive_bins)
        self.mean_ = X.mean(0) if self.standardize else np.zeros(X.shape[1])
        sd = X.std(0) if self.standardize else np.ones(X.shape[1])
        self.scale_ = np.where(sd > 0, sd, 1.0)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.debiaser_ = self._build(X.shape[1], bias_classes, debias=sensitive_features is not None)
            batches = BalancedBatches(self._tensor(X), torch.as_tensor(y_codes, dtype=torch.long),
                                      torch.as_tensor(bias), self.batch_size, self.balanced_batches,
                                      len(self.classes_), torch.Generator().manual_seed(seed))
            self.history_ = self.debiaser_.fit(batches)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "debiaser_")  # lambda_, a parameter, ends in "_" as fitted attributes do

    def _build(self, n_features: int, bias_classes: tuple[int, ...], *, debias: bool) -> Debiaser:
        schedule = {"pretrain_epochs": self.pretrain_epochs, "bias_epochs": self.bias_epochs,
                    "estimator_epochs": self.estimator_epochs, "epochs": self.epochs}
        if not debias:
            schedule = {"pretrain_epochs": self.pretrain_epochs + self.epochs, "bias_epochs": 0,
                        "estimator_epochs": 0, "epochs": 0}
        return Debiaser(DenseFeatures(n_features, self.hidden), n_classes=len(self.classes_),
                        bias_classes=bias_classes, branch_dim=self.branch_dim, method=self.method,
                        device=self._device(), conditional=self.conditional, lambda_=self.lambda_,
                        k_inner=self.k_inner, lr=self.lr, estimator_lr=self.estimator_lr,
                        weight_decay=self.weight_decay, backend=self.backend, **schedule)

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((X - self.mean_) / self.scale_, dtype=torch.float32)

    def decision_function(self, X: Any) -> np.ndarray:
        """Target logits: ``(n,)`` for two classes (of ``classes_[1]``), else ``(n, classes)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.debiaser_.outputs(self._tensor(X))["logits"].cpu().double().numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, classes)``, in the order of ``classes_``."""
        logits = torch.as_tensor(self.decision_function(X))
        if logits.dim() == 1:
            p = torch.sigmoid(logits)
            return torch.stack([1 - p, p], 1).numpy()
        return torch.softmax(logits, 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row ``(n,)``."""
        best = self.predict_proba(X).argmax(1)  # first: it checks that the classifier is fitted
        return self.classes_[best]

    def target_features(self, X: Any) -> np.ndarray:
        """The target features h^y ``(n, branch_dim)`` of X (what the estimator made independent of S)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.debiaser_.outputs(self._tensor(X))["target_features"].cpu().numpy()
