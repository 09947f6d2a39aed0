"""Group fairness metrics with fairlearn's signature: per-group table, demographic parity and equalized odds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from python.metrics import (
    GROUP_COLUMNS,
    binary_rates,
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_by_group,
)

# group a: TPR 1/2, FPR 1/2, selection 2/4, accuracy 2/4; group b: TPR 1/1, FPR 2/3, selection 3/4, accuracy 2/4
Y_TRUE = [1, 1, 0, 0, 1, 0, 0, 0]
Y_PRED = [1, 0, 1, 0, 1, 1, 1, 0]
GROUP = ["a"] * 4 + ["b"] * 4


def test_hand_computed_table_and_differences():
    table = fairness_by_group(Y_TRUE, Y_PRED, sensitive_features=GROUP)
    assert list(table.columns) == list(GROUP_COLUMNS) and list(table.index) == ["a", "b"]
    assert table.index.name == "sensitive_feature_0"
    assert table.loc["a"].tolist() == pytest.approx([4, 0.5, 0.5, 0.5, 0.5])
    assert table.loc["b"].tolist() == pytest.approx([4, 0.75, 0.5, 1.0, 2 / 3])
    assert table["count"].dtype == np.int64
    assert demographic_parity_difference(Y_TRUE, Y_PRED, sensitive_features=GROUP) == pytest.approx(0.25)
    assert equalized_odds_difference(Y_TRUE, Y_PRED, sensitive_features=GROUP) == pytest.approx(0.5)  # TPR gap


@pytest.mark.parametrize("convert", [
    lambda v: v, np.asarray, pd.Series, lambda v: torch.tensor(v) if not isinstance(v[0], str) else v,
    lambda v: np.asarray(v, dtype=bool) if not isinstance(v[0], str) else np.asarray(v, dtype=object),
], ids=["list", "numpy", "series", "tensor", "bool"])
def test_every_array_like_gives_the_same_result(convert):
    table = fairness_by_group(convert(Y_TRUE), convert(Y_PRED), sensitive_features=convert(GROUP))
    expected = fairness_by_group(Y_TRUE, Y_PRED, sensitive_features=GROUP)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected.reset_index(drop=True))
    assert equalized_odds_difference(convert(Y_TRUE), convert(Y_PRED), sensitive_features=convert(GROUP)) == 0.5


def test_a_series_and_a_dataframe_keep_their_names_and_an_index_is_ignored():
    series = pd.Series(GROUP, name="sex", index=range(100, 108))
    assert fairness_by_group(Y_TRUE, Y_PRED, sensitive_features=series).index.name == "sex"
    y = pd.Series(Y_TRUE, index=range(50, 58))  # pandas indexes need not agree: rows pair by position
    assert demographic_parity_difference(y, Y_PRED, sensitive_features=series) == pytest.approx(0.25)


def test_several_features_group_by_their_combinations_that_occur():
    rng = np.random.default_rng(0)
    n = 400
    sex, race = rng.choice(["F", "M"], n), rng.choice([0, 1, 2], n)
    race[sex == "F"] = np.where(race[sex == "F"] == 2, 1, race[sex == "F"])  # (F, 2) never occurs
    y_true, y_pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    frame = pd.DataFrame({"sex": sex, "race": race})
    table = fairness_by_group(y_true, y_pred, sensitive_features=frame)
    assert table.index.names == ["sex", "race"]
    assert list(table.index) == [("F", 0), ("F", 1), ("M", 0), ("M", 1), ("M", 2)]
    assert table["count"].sum() == n
    for (s, r), row in table.iterrows():
        m = (sex == s) & (race == r)
        assert row.tolist() == pytest.approx(list(binary_rates(y_true[m], y_pred[m]).values()))
    as_array = fairness_by_group(y_true, y_pred, sensitive_features=np.stack([sex, race.astype(str)], 1))
    assert as_array.index.names == ["sensitive_feature_0", "sensitive_feature_1"]
    assert as_array["selection_rate"].tolist() == pytest.approx(table["selection_rate"].tolist())
    combined = [f"{s}{r}" for s, r in zip(sex, race, strict=True)]  # one feature of the combinations: same numbers
    for metric in (demographic_parity_difference, equalized_odds_difference):
        assert metric(y_true, y_pred, sensitive_features=frame) == pytest.approx(
            metric(y_true, y_pred, sensitive_features=combined))


def test_a_group_without_positives_has_no_tpr_and_is_left_out_of_the_tpr_difference():
    y_true, y_pred, group = [0, 0, 1, 1, 0, 0], [1, 0, 1, 0, 0, 0], ["a", "a", "b", "b", "b", "b"]
    table = fairness_by_group(y_true, y_pred, sensitive_features=group)
    assert math.isnan(table.loc["a", "tpr"]) and table.loc["b", "tpr"] == 0.5
    assert table["fpr"].tolist() == [0.5, 0.0]
    assert equalized_odds_difference(y_true, y_pred, sensitive_features=group) == pytest.approx(0.5)  # FPR gap


@pytest.mark.parametrize("y_true, y_pred, features, message", [
    ([0, 1, 1], [0, 1], ["a"] * 3, "y_pred has 2 entries, y_true 3"),
    ([0, 1, 1], [0, 1, 1], ["a"] * 2, "sensitive_features has 2 rows, y_true 3"),
    ([0, 1, 2], [0, 1, 1], ["a"] * 3, r"y_true must hold binary labels 0/1 .* 3 distinct values \[0, 1, 2\]"),
    ([0, 1, 1], ["no", "yes", "yes"], ["a"] * 3, r"y_pred must hold binary labels 0/1 .*\['no', 'yes'\]"),
    ([0, 1, 0.5], [0, 1, 1], ["a"] * 3, "y_true must hold binary labels"),
    ([[0, 1], [1, 0]], [0, 1], ["a"] * 2, r"y_true must be 1-d .*\(2, 2\)"),
    ([0, 1, 1], [0, 1, 1], pd.DataFrame({"sex": ["F", None, "M"]}), "sensitive_features column 'sex' has 1 missing"),
])
def test_bad_input_is_a_clear_error_naming_the_argument(y_true, y_pred, features, message):
    for metric in (fairness_by_group, demographic_parity_difference, equalized_odds_difference):
        with pytest.raises(ValueError, match=message):
            metric(y_true, y_pred, sensitive_features=features)


def test_matches_fairlearn():
    fairlearn = pytest.importorskip("fairlearn.metrics")
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(1)
    n = 600
    frame = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "age": rng.choice(["<30", "30-50", "50+"], n)})
    y_true = pd.Series(rng.integers(0, 2, n))
    y_pred = (rng.random(n) < 0.3 + 0.2 * (frame["sex"] == "M")).astype(int)
    for features in (frame["sex"], frame):
        ours = fairness_by_group(y_true, y_pred, sensitive_features=features)
        theirs = fairlearn.MetricFrame(
            metrics={"count": fairlearn.count, "selection_rate": fairlearn.selection_rate, "accuracy": accuracy_score,
                     "tpr": fairlearn.true_positive_rate, "fpr": fairlearn.false_positive_rate},
            y_true=y_true, y_pred=y_pred, sensitive_features=features).by_group
        assert ours.to_numpy(float) == pytest.approx(theirs.loc[ours.index, list(GROUP_COLUMNS)].to_numpy(float))
        for metric in ("demographic_parity_difference", "equalized_odds_difference"):
            assert globals()[metric](y_true, y_pred, sensitive_features=features) == pytest.approx(
                getattr(fairlearn, metric)(y_true, y_pred, sensitive_features=features))
