"""Your own table (--dataset csv): reading, encoding, splitting, one-line errors and a quick run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import python.train as train_cli
from python.data.csv_table import FRACTIONS, load_csv_table

ROOT = Path(__file__).resolve().parents[1]
N = 300


def table(n: int = N, seed: int = 0) -> pd.DataFrame:
    """A small income table: income depends on sex (the bias) and on hours; age is a numeric column."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    hours = rng.normal(40, 8, n).round(1)
    job = rng.choice(["clerk", "driver", "nurse", "teacher"], n)
    score = 0.08 * (hours - 40) + 1.2 * (sex == "M") + rng.normal(0, 1, n) - 0.6
    return pd.DataFrame({"age": rng.integers(18, 80, n), "sex": sex, "hours": hours, "job": job,
                         "income": np.where(score > 0, ">50K", "<=50K")})


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "table.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_features_target_bias_and_splits(tmp_path):
    frame = table()
    bundle = load_csv_table(write(tmp_path, frame), target="income", bias="sex,age", seed=3)
    assert bundle.name == "csv" and bundle.n_classes == 2 and bundle.bias_names == ("sex", "age")
    assert bundle.bias_classes == (2, 4)  # sex: F, M; age: 62 numeric values -> 4 quantile bins
    sizes = {name: len(split) for name, split in bundle.splits.items()}
    assert sizes == {"train": 210, "val": 45, "test": 45} and N * FRACTIONS["val"] == 45
    train = bundle.splits["train"]
    x = train.inputs[0]
    assert x.dtype == torch.float32 and x.shape[1] == 1 + 4  # hours standardised + job one-hot; sex, age are bias
    assert x[:, 0].mean().abs() < 1e-5 and (x[:, 0].std(unbiased=False) - 1).abs() < 1e-5
    assert torch.equal(x[:, 1:].sum(1), torch.ones(len(train)))  # one job each
    assert set(train.y.tolist()) == {0, 1}
    assert "target 'income': '<=50K' -> 0, '>50K' -> 1" in bundle.log
    assert "bias 'sex': 'F' -> 0, 'M' -> 1" in bundle.log
    assert any("age" in line and "4 quantile bins of the train split" in line for line in bundle.log)
    age_bins = torch.bincount(train.bias[:, 1], minlength=4)
    assert age_bins.min() >= 0.2 * len(train)  # quantile bins: about a quarter each
    # rows of each split are rows of the table: hours un-standardised give back the table's values
    rows = np.random.RandomState(3).permutation(N)[:210]
    hours = frame["hours"].to_numpy()[rows]
    restored = x[:, 0].double().numpy() * hours.std() + hours.mean()
    assert np.allclose(restored, hours, atol=1e-3)
    again = load_csv_table(write(tmp_path, frame), target="income", bias="sex,age", seed=3)
    other = load_csv_table(write(tmp_path, frame), target="income", bias="sex,age", seed=4)
    assert torch.equal(again.splits["test"].inputs[0], bundle.splits["test"].inputs[0])
    assert not torch.equal(other.splits["test"].inputs[0], bundle.splits["test"].inputs[0])


def test_bias_bins_and_integer_coded_categories(tmp_path):
    frame = table().assign(region=lambda f: np.arange(len(f)) % 3)  # integer codes: a category each
    path = write(tmp_path, frame)
    bundle = load_csv_table(path, target="income", bias="age,region", bias_bins=3)
    assert bundle.bias_classes == (3, 3)
    assert "bias 'region': 0 -> 0, 1 -> 1, 2 -> 2" in bundle.log


def test_rows_with_missing_values_are_dropped_and_counted(tmp_path):
    frame = table().astype({"hours": object})
    frame.loc[[4, 9], "hours"] = None
    frame.loc[7, "sex"] = None
    bundle = load_csv_table(write(tmp_path, frame), target="income", bias="sex")
    assert sum(len(s) for s in bundle.splits.values()) == N - 3
    assert "rows dropped for a missing 'hours': 2 (e.g. line 6; line 11)" in bundle.log
    assert "rows dropped for a missing 'sex': 1 (e.g. line 9)" in bundle.log


def test_a_category_the_train_split_lacks_gets_zeros_and_is_counted(tmp_path):
    frame = table()
    frame.loc[0, "job"] = "astronaut"
    bundle = load_csv_table(write(tmp_path, frame), target="income", bias="sex")
    in_train = 0 in np.random.RandomState(0).permutation(N)[:210]
    counted = [line for line in bundle.log if "absent from the train split" in line]
    assert bundle.splits["train"].inputs[0].shape[1] == 1 + 1 + 4 + in_train  # age, hours, the jobs
    assert counted == ([] if in_train else ["values of 'job' absent from the train split (all-zero one-hot): 1 "
                                            "(e.g. line 2)"])


@pytest.mark.parametrize("edit, flags, message", [
    (None, {"target": "salary"}, r"no column 'salary' \(--target\); the columns are \['age', 'sex'"),
    (None, {"bias": "sex,gender"}, r"no column 'gender' \(--bias\)"),
    (lambda f: f.assign(income="yes"), {}, r"target column 'income' has a single value \('yes'\): it needs two"),
    (lambda f: f.assign(income=np.arange(len(f)) % 3), {}, r"target column 'income' has 3 distinct values .*binary"),
    (lambda f: f.astype({"hours": object}).assign(hours=lambda g: g["hours"].where(g.index != 5, "forty")), {},
     r"column 'hours' must be numeric .* 1 that are not, e.g. 'forty' on line 7"),
    (lambda f: f.assign(age=lambda g: g["age"].astype(float).where(g.index != 2, np.inf)), {},
     r"column 'age' holds 1 non-finite values, e.g. inf on line 4"),
    (lambda f: f.assign(name=[f"person {i}" for i in range(len(f))]), {},
     r"feature column 'name' is not numeric and has 210 distinct values .* too many to one-hot encode"),
    (lambda f: f.assign(sex="F"), {}, r"bias column 'sex' has a single value \('F'\): nothing to debias"),
    (None, {"bias": "income"}, r"column 'income' is both the target and a bias column"),
    (lambda f: f.head(10), {}, r"10 complete rows of 10: at least 20"),
])
def test_bad_tables_are_clear_errors_naming_the_column(tmp_path, edit, flags, message):
    frame = table()
    path = write(tmp_path, edit(frame) if edit else frame)
    with pytest.raises(ValueError, match=message) as info:
        load_csv_table(path, **{"target": "income", "bias": "sex", **flags})
    assert str(info.value).startswith(f"--csv {path}: ") and "\n" not in str(info.value)


def test_a_missing_file_and_missing_flags_are_errors_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--csv .*nowhere\.csv: no such file"):
        load_csv_table(tmp_path / "nowhere.csv", target="income", bias="sex")
    with pytest.raises(ValueError, match=r"dataset csv needs --target COL, --bias COL\[,COL...\]"):
        train_cli.main(["--dataset", "csv", "--csv", "t.csv", "--out", str(tmp_path / "run")])
    with pytest.raises(ValueError, match=r"bias_bins must be an int >= 2"):
        train_cli.main(["--dataset", "csv", "--csv", "t.csv", "--target", "y", "--bias", "b", "--bias-bins", "1",
                        "--out", str(tmp_path / "run")])
    with pytest.raises(ValueError, match=r"bias must be gender, race or both \(Adult\), got 'sex'"):
        train_cli.main(["--dataset", "adult", "--bias", "sex", "--out", str(tmp_path / "run")])


def test_the_cli_error_for_a_missing_file_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "python.train", "--dataset", "csv", "--csv",
                           str(tmp_path / "nowhere.csv"), "--target", "income", "--bias", "sex", "--quick", "--out",
                           str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: --csv {tmp_path / 'nowhere.csv'}: no such file"


def test_a_quick_run_on_a_table_end_to_end(tmp_path, capsys):
    path = write(tmp_path, table())
    metrics = train_cli.main(["--dataset", "csv", "--csv", str(path), "--target", "income", "--bias", "sex,age",
                              "--quick", "--k-inner", "2", "--batch-size", "64", "--no-progress",
                              "--out", str(tmp_path / "run")])
    assert metrics["dataset"] == "csv" and metrics["data_source"] == "real" and str(path) in metrics["data_description"]
    test = metrics["metrics"]["test"]
    assert {"auc", "ap", "f1", "accuracy", "balanced_accuracy", "dp_difference_sex", "eo_difference_sex",
            "dp_difference_age", "eo_difference_age"} <= set(test)
    assert 0 <= test["dp_difference_sex"] <= 1 and 0 <= test["auc"] <= 1
    assert set(metrics["bias_leakage"]) == {"sex", "age"}
    assert metrics["bias_leakage"]["age"]["features"]["chance_balanced_accuracy"] == pytest.approx(1 / 4)
    assert metrics["baseline"] is not None
    assert {"history.csv", "curves.png", "metrics.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
    out = capsys.readouterr().out
    assert "csad: csv (real: table" in out and "test dp_difference_sex" in out


def test_postprocess_passes_the_table_flags_to_the_baseline_it_trains():
    from python import postprocess

    args = postprocess.parser().parse_args(["--dataset", "csv", "--csv", "t.csv", "--target", "income", "--bias",
                                            "sex,age", "--bias-bins", "5"])
    assert postprocess.data_settings(args) == {"bias": "sex,age", "csv": "t.csv", "target": "income", "bias_bins": 5}
