"""python.sklearn_api.CSADClassifier: scikit-learn's estimator checks, clone / Pipeline / GridSearchCV with the
sensitive features passed to fit, pandas and numpy input, categorical and binned continuous sensitive features, and
less bias in the target features than the same network trained without them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array
from sklearn.utils.estimator_checks import parametrize_with_checks

from python import CSADClassifier
from python.metrics import bias_leakage

FAST = {"pretrain_epochs": 5, "epochs": 5, "k_inner": 2, "random_state": 0}


class DebiasedOnFirstColumn(CSADClassifier):
    """CSADClassifier whose ``fit(X, y)`` debiases against X's first column (binned when continuous), so that the
    estimator checks, which call ``fit(X, y)``, run the debiasing path too."""

    def fit(self, X, y, sensitive_features=None):
        try:
            first = check_array(X)[:, 0]
        except (TypeError, ValueError):  # X is not valid: CSADClassifier.fit says why, as the checks expect
            first = None
        return super().fit(X, y, sensitive_features=first)


@parametrize_with_checks([CSADClassifier(**FAST), DebiasedOnFirstColumn(**FAST)])
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="CSADClassifier.fit without sensitive_features")
        check(estimator)


def biased(n: int = 600, seed: int = 0, agreement: float = 0.9) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Features (a DataFrame), labels 'no'/'yes' equal to the sex for ``agreement`` of the rows, and the sensitive
    features: sex (text) and age (continuous)."""
    rng = np.random.default_rng(seed)
    sex = rng.integers(0, 2, n)
    y = np.where(rng.random(n) < agreement, sex, 1 - sex)
    age = rng.uniform(18, 80, n)
    signal = 2 * y[:, None] - 1 + rng.normal(0, 1.5, (n, 2))  # two noisy copies of the target
    x = pd.DataFrame({"signal_1": signal[:, 0], "signal_2": signal[:, 1], "proxy": sex + rng.normal(0, 0.3, n),
                      "age_proxy": age / 10 + rng.normal(0, 1, n), "noise": rng.normal(size=n)})
    return x, np.array(["no", "yes"])[y], pd.DataFrame({"sex": np.array(["f", "m"])[sex], "age": age})


def test_pandas_input_with_a_categorical_and_a_binned_continuous_sensitive_feature():
    x, y, s = biased()
    clf = CSADClassifier(sensitive_bins=3, **FAST).fit(x, y, sensitive_features=s)
    assert clf.debiaser_.method.task.bias_classes == (2, 3)  # sex coded, age cut into 3 quantile bins
    assert list(clf.classes_) == ["no", "yes"] and clf.feature_names_in_.tolist() == list(x.columns)
    proba = clf.predict_proba(x)
    assert proba.shape == (len(x), 2) and np.allclose(proba.sum(1), 1)
    assert set(clf.predict(x)) <= {"no", "yes"} and 0.5 < clf.score(x, y) <= 1
    # numpy input, one sensitive feature as a Series: the same shapes
    clf = clone(clf).fit(x.to_numpy(), y, sensitive_features=s["sex"])
    assert clf.debiaser_.method.task.bias_classes == (2,)


def test_without_sensitive_features_it_warns_and_trains_the_baseline():
    x, y, _ = biased()
    with pytest.warns(UserWarning, match="without debiasing"):
        clf = CSADClassifier(**FAST).fit(x, y)
    assert {h["phase"] for h in clf.history_} == {"pretrain_target"} and len(clf.history_) == 10


def test_debiasing_lowers_the_bias_leakage_of_the_target_features():
    x, y, s = biased(2000)
    x_test, y_test, s_test = biased(2000, seed=1, agreement=0.5)
    sex = torch.tensor((s_test["sex"] == "m").to_numpy()).long()
    settings = {**FAST, "k_inner": 5}
    with pytest.warns(UserWarning):
        vanilla = CSADClassifier(**settings).fit(x, y)
    debiased = CSADClassifier(**settings).fit(x, y, sensitive_features=s["sex"])
    leak = {name: bias_leakage(torch.as_tensor(clf.target_features(x_test)), sex)["balanced_accuracy"]
            for name, clf in (("vanilla", vanilla), ("csad", debiased))}
    assert leak["csad"] < leak["vanilla"] - 0.01, leak
    assert debiased.score(x_test, y_test) > vanilla.score(x_test, y_test)  # the test split decorrelates y and sex


def test_pipeline_and_grid_search_pass_the_sensitive_features_to_fit():
    x, y, s = biased(400)
    pipe = make_pipeline(StandardScaler(), CSADClassifier(standardize=False, **FAST))
    pipe.fit(x, y, csadclassifier__sensitive_features=s["sex"])
    assert pipe.score(x, y) > 0.5
    search = GridSearchCV(CSADClassifier(**FAST), {"lambda_": [1.0, 10.0]}, cv=2)
    search.fit(x, y, sensitive_features=s["sex"].to_numpy())
    assert search.best_params_["lambda_"] in (1.0, 10.0) and search.best_estimator_.debiaser_.config.lambda_ in (1, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_it_trains_on_the_gpu():
    x, y, s = biased(400)
    clf = CSADClassifier(device="cuda", **FAST).fit(x, y, sensitive_features=s["sex"])
    assert next(clf.debiaser_.net.parameters()).is_cuda and clf.score(x, y) > 0.5
