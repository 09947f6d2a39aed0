"""Your own table: ``--dataset csv --csv FILE --target COL --bias COL[,COL...]``.

The file is read with pandas (``read_csv``, a header line naming the columns). Then:

* rows with a missing value in any column used are dropped and counted (file line numbers in the log);
* target: exactly two distinct values; the smaller (sorted: ``0 < 1``, ``False < True``, ``"no" < "yes"``) is
  class 0, the other class 1. One value is an error naming the column, and so are three or more;
* bias columns (one bias head each; they are not inputs of the model): a numeric column with more than
  :data:`MAX_BIAS_CATEGORIES` distinct values is cut into ``bias_bins`` quantile bins of the train split (fewer when
  quantiles coincide), anything else (text, or few numbers) gets one integer code per value, in sorted order;
* every other column is a feature. A numeric column (pandas reads it as numbers, or at least half of its values
  parse as numbers, in which case the others are an error naming column and line) is standardised with the train
  split's mean and population sd; a non-numeric column is one-hot encoded with the categories of the train split
  (a value the train split lacks gets all zeros, counted in the log); more than :data:`MAX_CATEGORIES` categories
  is an error naming the column (an identifier or free text, not a category: drop it or encode it as numbers);
* a seeded random split (``seed``, the ``--split`` flag, 0-9): :data:`FRACTIONS` train/val/test.

Metrics besides the target's: per bias column the demographic parity and equalized odds differences of the
predictions (``python.metrics``), and, as for every dataset, bias leakage of the features.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..flags import Flag, Setting
from ..metrics import demographic_parity_difference, equalized_odds_difference, predicted_classes
from ..models import ModelSpec, dense_features
from .base import DataBundle, Split, Tally, split_sizes
from .spec import DatasetSpec

if TYPE_CHECKING:
    from ..config import TrainConfig

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
MAX_BIAS_CATEGORIES = 10  # a numeric bias column with more distinct values is binned into quantile bins
MAX_CATEGORIES = 50  # a non-numeric feature column with more categories in the train split is refused
MIN_ROWS = 20


def _error(path: Path, message: str) -> ValueError:
    return ValueError(f"--csv {path}: {message}")


def _shown(value: Any) -> str:
    """``repr`` of a cell, numpy scalars as plain Python values (``inf``, not ``np.float64(inf)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _lines(index: Any) -> list[str]:
    """File line numbers of data rows (the header is line 1)."""
    return [f"line {int(i) + 2}" for i in index]


def read_table(path: str | Path) -> Any:
    """The CSV file as a pandas DataFrame; FileNotFoundError or ValueError naming the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--csv {path}: no such file")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _error(path, f"cannot be read as a CSV table: {str(exc).strip()}") from None
    if frame.shape[1] < 2:
        raise _error(path, f"needs a header line and at least two columns (a feature and the target), got "
                           f"{list(frame.columns)}")
    return frame


def _numeric(frame: Any, column: str, path: Path) -> Any | None:
    """The column as float64 when it is numeric (pandas read numbers, or at least half its values parse as numbers);
    None for a non-numeric column. ValueError naming column and line for the values that are not numbers, or not
    finite, in a numeric column."""
    import pandas as pd

    values = frame[column]
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = values.astype(np.float64)
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna()
        if bad.mean() > 0.5:
            return None
        if bad.any():
            first = bad.idxmax()
            raise _error(path, f"column {column!r} must be numeric (most values are numbers) but holds "
                               f"{int(bad.sum())} that are not, e.g. {_shown(values[first])} on {_lines([first])[0]}")
    infinite = ~np.isfinite(numbers.to_numpy())
    if infinite.any():
        first = frame.index[infinite][0]
        raise _error(path, f"column {column!r} holds {int(infinite.sum())} non-finite values, e.g. "
                           f"{_shown(values[first])} on {_lines([first])[0]}")
    return numbers


def _codes(values: Any, categories: list[Any]) -> np.ndarray:
    """Index of each value in ``categories`` (-1 when absent)."""
    import pandas as pd

    return pd.Categorical(values, categories=categories).codes.astype(np.int64)


def _target(frame: Any, column: str, path: Path) -> tuple[np.ndarray, str]:
    values = sorted(frame[column].unique().tolist())
    if len(values) == 1:
        raise _error(path, f"target column {column!r} has a single value ({values[0]!r}): it needs two classes")
    if len(values) != 2:
        raise _error(path, f"target column {column!r} has {len(values)} distinct values ({values[:6]}"
                           f"{' ...' if len(values) > 6 else ''}): it must be binary (two classes)")
    return _codes(frame[column], values), f"target {column!r}: {values[0]!r} -> 0, {values[1]!r} -> 1"


def _bias(frame: Any, column: str, train: np.ndarray, bins: int, path: Path) -> tuple[np.ndarray, str]:
    values = frame[column]
    numbers = _numeric(frame, column, path)
    distinct = values.unique()
    if len(distinct) == 1:
        raise _error(path, f"bias column {column!r} has a single value ({_shown(distinct[0])}): nothing to debias")
    return code_bias(values, None if numbers is None else numbers.to_numpy(), train, bins, column)


def code_bias(values: Any, numbers: np.ndarray | None, train: np.ndarray, bins: int,
              name: str) -> tuple[np.ndarray, str]:
    """Integer codes ``(n,)`` of one bias attribute and a log line. ``values``: a pandas Series ``(n,)``;
    ``numbers``: the same values as float64 when the attribute is numeric, else None. A numeric attribute with more
    than :data:`MAX_BIAS_CATEGORIES` distinct values is cut into ``bins`` quantile bins of the rows ``train`` (an
    index or mask; fewer bins when quantiles coincide); anything else gets one code per distinct value, in sorted
    order."""
    distinct = values.unique()
    if numbers is not None and len(distinct) > MAX_BIAS_CATEGORIES:
        edges = np.unique(np.quantile(numbers[train], np.linspace(0, 1, bins + 1))[1:-1])
        codes = np.searchsorted(edges, numbers, side="right").astype(np.int64)
        cuts = ", ".join(f"{e:.4g}" for e in edges)
        return codes, (f"bias {name!r}: {len(distinct)} numeric values cut into {len(edges) + 1} quantile bins of "
                       f"the train split at {cuts}")
    categories = sorted(distinct.tolist())
    shown = ", ".join(f"{c!r} -> {i}" for i, c in enumerate(categories[:8]))
    return _codes(values, categories), f"bias {name!r}: {shown}{' ...' if len(categories) > 8 else ''}"


def _features(frame: Any, columns: list[str], train: np.ndarray, path: Path,
              tally: Tally) -> tuple[np.ndarray, list[str], list[str]]:
    """The feature matrix ``(n, F)`` float32, its column names and one log line per kind of column."""
    parts, names, numeric, one_hot = [], [], [], []
    for column in columns:
        numbers = _numeric(frame, column, path)
        if numbers is not None:
            x = numbers.to_numpy()
            mean, sd = x[train].mean(), x[train].std()
            sd = sd if sd > 0 else 1.0
            parts.append(((x - mean) / sd)[:, None])
            names.append(column)
            numeric.append(f"{column} {mean:.4g}/{sd:.4g}")
            continue
        values = frame[column].astype(str)
        categories = sorted(values.iloc[train].unique().tolist())
        if len(categories) > MAX_CATEGORIES:
            raise _error(path, f"feature column {column!r} is not numeric and has {len(categories)} distinct values in "
                               f"the train split, too many to one-hot encode (at most {MAX_CATEGORIES}): drop it or "
                               "encode it as numbers")
        codes = _codes(values, categories)
        unseen = np.flatnonzero(codes < 0)
        tally.add_many(f"values of {column!r} absent from the train split (all-zero one-hot)",
                       _lines(frame.index[unseen]), len(unseen))
        parts.append((codes[:, None] == np.arange(len(categories))).astype(np.float64))
        names += [f"{column}_{c}" for c in categories]
        one_hot.append(f"{column} ({len(categories)})")
    if not parts:
        raise _error(path, "no feature columns left besides the target and bias columns")
    log = []
    if numeric:
        log.append(f"numeric features standardised with the train split's mean/sd: {', '.join(numeric)}")
    if one_hot:
        log.append(f"non-numeric features one-hot encoded (categories of the train split): {', '.join(one_hot)}")
    return np.concatenate(parts, 1).astype(np.float32), names, log


def split_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices per split: a permutation drawn with ``seed``, cut by :data:`FRACTIONS` (val and test rounded)."""
    order = np.random.RandomState(seed).permutation(n)
    n_val, n_test = round(FRACTIONS["val"] * n), round(FRACTIONS["test"] * n)
    return {"train": order[: n - n_val - n_test], "val": order[n - n_val - n_test: n - n_test],
            "test": order[n - n_test:]}


def fairness_metrics(logits: tuple[torch.Tensor, ...], split: Split, bias_names: tuple[str, ...]) -> dict[str, float]:
    """Per bias column, the demographic parity and equalized odds differences of the predictions on ``split``, from
    its target logits ``logits[0]`` (``(n,)``; ``DataBundle.extra_metrics``)."""
    y, predicted = split.y.cpu().numpy(), predicted_classes(logits[0]).cpu().numpy()
    out = {}
    for k, name in enumerate(bias_names):
        groups = split.bias[:, k].cpu().numpy()
        out[f"dp_difference_{name}"] = demographic_parity_difference(y, predicted, sensitive_features=groups)
        out[f"eo_difference_{name}"] = equalized_odds_difference(y, predicted, sensitive_features=groups)
    return out


def load_csv_table(path: str | Path, *, target: str, bias: str, bias_bins: int = 4, seed: int = 0) -> DataBundle:
    """Loads the table ``path`` (module docstring). target: the target column. bias: one column or several, comma
    separated. bias_bins: quantile bins of a numeric bias column with many values. seed: of the random split.

    Returns a DataBundle with inputs ``(x (n, F) float32,)``, ``y (n,)`` int64 0/1 and ``bias (n, K)`` int64 codes.
    """
    path = Path(path)
    bias_columns = [c.strip() for c in bias.split(",") if c.strip()]
    if not bias_columns:
        raise _error(path, f"--bias must name one or more columns, comma separated, got {bias!r}")
    frame = read_table(path)
    for flag, column in [("--target", target), *(("--bias", c) for c in bias_columns)]:
        if column not in frame.columns:
            raise _error(path, f"no column {column!r} ({flag}); the columns are {list(frame.columns)}")
    if target in bias_columns:
        raise _error(path, f"column {target!r} is both the target and a bias column")
    if len(set(bias_columns)) != len(bias_columns):
        raise _error(path, f"--bias names a column twice: {bias_columns}")
    tally = Tally()
    missing = frame.isna()
    for column in frame.columns:
        rows = frame.index[missing[column]]
        tally.add_many(f"rows dropped for a missing {column!r}", _lines(rows), len(rows))
    rows_read = len(frame)
    frame = frame[~missing.any(axis=1)]
    if len(frame) < MIN_ROWS:
        raise _error(path, f"{len(frame)} complete rows of {rows_read}: at least {MIN_ROWS} are needed to split "
                           "into train, val and test")
    index = split_rows(len(frame), seed)
    train = index["train"]
    y, target_note = _target(frame, target, path)
    if len(np.unique(y[train])) < 2:
        raise _error(path, f"the train split (seed {seed}) holds only one class of target column {target!r}; "
                           "the table needs more rows of the rarer class")
    biases = [_bias(frame, c, train, bias_bins, path) for c in bias_columns]
    features = [c for c in frame.columns if c != target and c not in bias_columns]
    x, _, feature_log = _features(frame, features, train, path, tally)
    b = np.stack([codes for codes, _ in biases], 1)
    splits = {name: Split((torch.from_numpy(x[rows]),), torch.from_numpy(y[rows]), torch.from_numpy(b[rows]))
              for name, rows in index.items()}
    sizes = split_sizes(index)
    log = [f"read {rows_read} rows, {frame.shape[1]} columns", *tally.lines(), target_note,
           *(note for _, note in biases), *feature_log,
           *(f"{name}: {len(rows)} rows, class-1 share {y[rows].mean():.3f}" for name, rows in index.items())]
    description = (f"table {path}: {len(frame)} rows, {x.shape[1]} features from {len(features)} columns, target "
                   f"{target!r}, bias {' + '.join(bias_columns)}; random split {seed}, train/val/test {sizes}")
    bias_names = tuple(bias_columns)
    bundle = DataBundle(name="csv", data_source="real", description=description, splits=splits, n_classes=2,
                        bias_classes=tuple(int(b[:, k].max()) + 1 for k in range(b.shape[1])), bias_names=bias_names,
                        tolerance=0, test_is_bias_free=False, log=log)
    bundle.extra_metrics = lambda logits, split: fairness_metrics(logits, split, bias_names)
    return bundle


# ----------------------------------------------------------------------------------------------------------------------
# Registration (python/data/registry.py)


def _check_bias_bins(config: TrainConfig) -> None:
    if isinstance(config.bias_bins, bool) or not isinstance(config.bias_bins, int) or config.bias_bins < 2:
        raise ValueError(f"bias_bins must be an int >= 2 (quantile bins of a numeric bias column), got "
                         f"{config.bias_bins!r}")


def _check_columns_given(config: TrainConfig) -> None:
    missing = [flag for flag, value in (("--csv FILE", config.csv), ("--target COL", config.target),
                                        ("--bias COL[,COL...]", config.bias)) if not value]
    if missing:
        raise ValueError(f"dataset csv needs {', '.join(missing)}: the table, its binary target column and its "
                         "bias column(s)")


def _load(config: TrainConfig) -> DataBundle:
    return load_csv_table(config.csv, target=config.target, bias=config.bias, bias_bins=config.bias_bins,
                          seed=config.split)


SPEC = DatasetSpec(
    name="csv",
    summary="your own table (--csv FILE --target COL --bias COL[,COL...])",
    load=_load,
    model=ModelSpec(branch=32, target=(32,), bias=(32,), estimator=(32, 32, 32)),  # Adult's MLP
    features=dense_features,
    # Adult's schedule; --csv, --target and --bias have no default
    defaults={"lambda_": 10.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1,
              "bias": None},
    quick_train_rows=4096,
    settings=(
        Setting("csv", str | None, None, Flag(
            "csv: the table (a header line; rows with a missing value dropped and counted; numeric features "
            "standardised, text features one-hot encoded)", metavar="FILE")),
        Setting("target", str | None, None, Flag("csv: the target column (two distinct values)")),
        Setting("bias", str | None, "gender", Flag(
            "csv: the bias column(s), COL[,COL...], one bias head each (not inputs of the model)", metavar="BIAS")),
        Setting("bias_bins", int, 4, Flag(
            "csv: quantile bins of the train split for a numeric bias column with more than 10 distinct values "
            "(default 4)"), check=_check_bias_bins),
        Setting("split", int, 0, Flag("csv: the seed (0-9) of the random 70/15/15 train/val/test split")),
    ),
    check=_check_columns_given,
)
