"""UCI Adult (income > 50K, bias gender / race) with the preprocessing of SenSR (Yurochkin et al. 2020).

Files: ``adult.data`` and ``adult.test`` (the unmodified UCI release, or their ``.gz``) in ``<data_root>/adult/``, or
with ``data_root=None`` the gzip-compressed copy shipped inside this package, :data:`SHIPPED_DIR` (``adult_files/``
beside this module; its README has the sha256 sums, the CC BY 4.0 licence and the citation), whose sha256 is checked
on every read. ``download=True`` fetches missing files from UCI into ``<data_root>/adult/`` and checks them against
:data:`SHA256`.

Preprocessing, as SenSR's ``get_adult_data`` / ``preprocess_adult_data`` (DESIGN §4):

* both files concatenated (adult.data first); fields stripped of whitespace; the ``|1x3 Cross validator`` line of
  adult.test (any line starting with ``|``) and blank lines skipped and counted; the trailing ``.`` of the test
  labels stripped;
* rows with ``?`` in occupation or native-country dropped (48,842 -> 45,222 rows); a numeric value outside its
  plausible range (:data:`NUMERIC_RANGES`, e.g. age 0-150, capital-gain 0-1e9) is an error naming file and line;
* one-hot workclass, marital-status, occupation, relationship, sex, race; fnlwgt, education, native-country,
  sex_Female and every race column except race_White dropped. That gives 41 features with no extra convention:
  5 continuous + workclass 7 + marital-status 7 + occupation 14 + relationship 6 + sex_Male + race_White. Workclass
  has 7 columns, not 9: every row with workclass ``?`` or ``Never-worked`` also has occupation ``?`` and is dropped.
  (A row of another file that keeps such a workclass gets an all-zero workclass one-hot, counted in the log.)
* column order is pandas ``get_dummies``' order in SenSR: continuous columns, then each one-hot group in the order
  above, categories sorted; so relationship_* are columns 33-38, sex_Male 39 and race_White 40 as in SenSR's
  ``get_consistency``. See :data:`ADULT_FEATURES`.
* sex_Male and race_White stay among the model's input features, as in SenSR (the paper follows SenSR [53]);
  they are also the bias labels.
* splits: ``np.random.RandomState(split).permutation(n)``, the first ``int(0.8 n)`` rows train+val and the rest
  test, which is what aif360's ``split([0.8], shuffle=True, seed=split)`` in SenSR draws. Of the 80% part, the
  last 10% (of its permutation order) is the val split, the first 90% the train split.
* the 5 continuous features are standardised with the train split's mean and population sd (StandardScaler);
  one-hot columns stay 0/1.

y: income > 50K (int64 0/1). The test split is a random split, not bias-free (``test_is_bias_free=False``).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import math
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..checkpoint import write_atomic
from ..flags import Flag, Setting
from ..metrics import predicted_classes
from ..models import ModelSpec, dense_features
from .base import SPLITS, DataBundle, Split, Tally, log_report, split_sizes
from .spec import DatasetSpec

if TYPE_CHECKING:
    from ..config import TrainConfig

logger = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "adult_files"  # adult.data.gz, adult.test.gz, adult.names.gz
FILES = ("adult.data", "adult.test")
URL_BASE = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
SHA256 = {  # of the (decompressed) UCI release, as listed in adult_files/README.md
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
DOWNLOAD_TIMEOUT_S = 20.0  # per socket operation (connect, each read)
DOWNLOAD_DEADLINE_S = 60.0  # whole transfer of one file, DNS included

COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
    "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
)  # fmt: skip
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
# Plausible values of each numeric column; a value outside is an error naming file and line. The UCI files span age
# 17-90, fnlwgt 12,285-1,490,400, education-num 1-16, capital-gain 0-99,999, capital-loss 0-4,356, hours-per-week
# 1-99. The bounds keep the float64 standardisation and the float32 features finite.
NUMERIC_RANGES = {
    "age": (0.0, 150.0), "fnlwgt": (0.0, 1e10), "education-num": (0.0, 100.0), "capital-gain": (0.0, 1e9),
    "capital-loss": (0.0, 1e9), "hours-per-week": (0.0, 168.0),
}  # fmt: skip
CONTINUOUS = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ONE_HOT = {  # categories that get a column, sorted as pandas get_dummies sorts them
    "workclass": (
        "Federal-gov", "Local-gov", "Private", "Self-emp-inc", "Self-emp-not-inc", "State-gov", "Without-pay",
    ),
    "marital-status": (
        "Divorced", "Married-AF-spouse", "Married-civ-spouse", "Married-spouse-absent", "Never-married", "Separated",
        "Widowed",
    ),
    "occupation": (
        "Adm-clerical", "Armed-Forces", "Craft-repair", "Exec-managerial", "Farming-fishing", "Handlers-cleaners",
        "Machine-op-inspct", "Other-service", "Priv-house-serv", "Prof-specialty", "Protective-serv", "Sales",
        "Tech-support", "Transport-moving",
    ),
    "relationship": ("Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife"),
}  # fmt: skip
RACES = ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black")
SEXES = ("Female", "Male")
OTHER_VALUES = {"workclass": ("?", "Never-worked"), "occupation": ("?",)}  # valid in the files, no column
LABELS = {"<=50K": 0, ">50K": 1}
ADULT_FEATURES: tuple[str, ...] = (
    CONTINUOUS + tuple(f"{col}_{cat}" for col, cats in ONE_HOT.items() for cat in cats) + ("sex_Male", "race_White")
)
BIASES = {"gender": ("gender",), "race": ("race",), "both": ("gender", "race")}
BIAS_COLUMNS = {"gender": "sex_Male", "race": "race_White"}
N_SPLITS = 10
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1  # of the train+val (80%) part


# ----------------------------------------------------------------------------------------------------------------------
# Download


def _fetch(url: str, timeout: float, deadline: float) -> bytes:
    """The body at ``url``; RuntimeError naming the URL when offline, on HTTP errors, or past ``deadline`` s."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                result["data"] = response.read()
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    thread = threading.Thread(target=work, daemon=True)  # a stuck DNS lookup ignores the socket timeout
    thread.start()
    thread.join(deadline)
    hint = "check the network, or download the files by hand and pass --data-root (a folder holding adult/)"
    if thread.is_alive():
        raise RuntimeError(f"Adult: downloading {url} took more than {deadline:.0f} s; {hint}")
    error = result.get("error")
    if isinstance(error, (urllib.error.URLError, OSError)):
        raise RuntimeError(f"Adult: cannot download {url}: {error}; {hint}") from error
    if isinstance(error, BaseException):
        raise error
    return result["data"]  # type: ignore[return-value]


def download_adult(
    folder: str | Path, *, timeout: float = DOWNLOAD_TIMEOUT_S, deadline: float = DOWNLOAD_DEADLINE_S
) -> list[str]:
    """Downloads the missing ones of adult.data / adult.test from UCI into ``folder``; returns log lines.

    Each file is checked against :data:`SHA256` before it is written (temp file + rename), so a failed or wrong
    download leaves nothing behind. RuntimeError naming the URL when offline or on a checksum mismatch.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = []
    for name in FILES:
        target = folder / name
        if target.is_file():
            continue
        url = URL_BASE + name
        data = _fetch(url, timeout, deadline)
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHA256[name]:
            raise RuntimeError(
                f"Adult: {url} has sha256 {digest}, expected {SHA256[name]} (UCI release); not written to {target}"
            )
        write_atomic(target, lambda f, data=data: f.write(data))
        log.append(f"downloaded {url} -> {target} ({len(data)} bytes, sha256 ok)")
        logger.info(log[-1])
    return log


# ----------------------------------------------------------------------------------------------------------------------
# Parsing


def _number(value: str, column: str, where: str) -> float:
    try:
        out = float(value)
    except ValueError:
        out = math.nan
    if not math.isfinite(out):
        raise ValueError(f"{where}: {column} {value!r} is not a number")
    low, high = NUMERIC_RANGES[column]
    if not low <= out <= high:
        raise ValueError(f"{where}: {column} {value!r} is outside its plausible range {low:g}..{high:g}")
    return out


def _category(value: str, column: str, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ValueError(f"{where}: {column} {value!r} is not one of {list(allowed)}")
    return value


def _parse_row(fields: list[str], where: str) -> dict[str, object]:
    """The 15 stripped fields of one line -> {column: float | str}, income as 0/1; ValueError naming ``where``."""
    if len(fields) != len(COLUMNS):
        raise ValueError(
            f"{where}: {len(fields)} comma-separated fields, expected {len(COLUMNS)} ({', '.join(COLUMNS)})"
        )
    raw = dict(zip(COLUMNS, fields, strict=True))
    row: dict[str, object] = {c: _number(raw[c], c, where) for c in NUMERIC}
    for column, cats in ONE_HOT.items():
        row[column] = _category(raw[column], column, cats + OTHER_VALUES.get(column, ()), where)
    row["race"] = _category(raw["race"], "race", RACES, where)
    row["sex"] = _category(raw["sex"], "sex", SEXES, where)
    row["native-country"] = raw["native-country"]
    label = raw["income"].removesuffix(".")
    row["income"] = LABELS[_category(label, "income", tuple(LABELS), where)]
    return row


def _stored(folder: Path, name: str) -> Path:
    """``folder/name``, else ``folder/name.gz`` when only that exists (the shipped copy is compressed)."""
    path = folder / name
    gz = folder / f"{name}.gz"
    return gz if not path.is_file() and gz.is_file() else path


def read_file(folder: str | Path, name: str) -> bytes:
    """The bytes of ``name`` in ``folder`` (decompressed when stored as ``name.gz``); FileNotFoundError saying how to
    get the files (``--data-root``, ``--download``)."""
    path = _stored(Path(folder), name)
    if not path.is_file():
        raise FileNotFoundError(
            f"Adult: {folder / name} not found. Put the UCI files {' and '.join(FILES)} in {folder} (from {URL_BASE}), "
            "pass --download to fetch and verify them, or omit --data-root to use the copy shipped with csad"
        )
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable gzip file: {e}") from e


def _read_lines(path: Path) -> tuple[list[tuple[int, list[str]]], int, str]:
    """(line number, stripped fields) per data line of ``path``, the number of skipped lines, and its sha256."""
    data = read_file(path.parent, path.name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path} line {line}: not UTF-8 text: {e.reason}") from e
    rows, skipped = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("|"):
            skipped += 1
            continue
        rows.append((number, [f.strip() for f in stripped.split(",")]))
    return rows, skipped, hashlib.sha256(data).hexdigest()


def _encode(rows: list[dict[str, object]]) -> np.ndarray:
    """Parsed rows -> ``(n, 41)`` float64 features in :data:`ADULT_FEATURES` order, continuous ones raw."""
    index = {name: i for i, name in enumerate(ADULT_FEATURES)}
    x = np.zeros((len(rows), len(ADULT_FEATURES)), dtype=np.float64)
    x[:, : len(CONTINUOUS)] = np.array([[r[c] for c in CONTINUOUS] for r in rows], dtype=np.float64).reshape(-1, 5)
    for i, r in enumerate(rows):
        for column in ONE_HOT:
            j = index.get(f"{column}_{r[column]}")
            if j is not None:
                x[i, j] = 1.0
        x[i, index["sex_Male"]] = r["sex"] == "Male"
        x[i, index["race_White"]] = r["race"] == "White"
    return x


@functools.lru_cache(maxsize=2)
def _parse_cached(folder: str, stamp: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Features ``(n, 41)`` (unstandardised), labels ``(n,)`` and log lines; ``stamp`` (mtime, size) keys the cache."""
    del stamp
    kept: list[dict[str, object]] = []
    counts, log, total = Tally(), [], 0
    for name in FILES:
        path = Path(folder) / name
        lines, skipped, digest = _read_lines(path)
        total += len(lines)
        for number, fields in lines:
            where = f"{name} line {number}"
            row = _parse_row(fields, f"{path} line {number}")
            missing = [c for c in ("occupation", "native-country") if row[c] == "?"]
            if missing:
                counts.add(f"rows dropped: '?' in {' and '.join(missing)}", where)
                continue
            if row["workclass"] in OTHER_VALUES["workclass"]:
                counts.add(f"rows kept with workclass {row['workclass']!r} (no column: all-zero workclass)", where)
            kept.append(row)
        if digest != SHA256[name] and Path(folder) == SHIPPED_DIR.resolve():
            raise ValueError(
                f"Adult: the shipped copy {_stored(SHIPPED_DIR, name)} is damaged: sha256 {digest}, expected "
                f"{SHA256[name]}; restore it from the repository (git checkout) or pass --data-root"
            )
        check = "matches the UCI release" if digest == SHA256[name] else f"differs from the UCI release ({digest})"
        log.append(f"{path}: {len(lines)} rows, {skipped} blank or '|' comment lines skipped; sha256 {check}")
    if not kept:
        raise ValueError(f"Adult: no usable rows in {folder}/{{{','.join(FILES)}}}")
    x = _encode(kept)
    y = np.array([r["income"] for r in kept], dtype=np.int64)
    log += counts.lines()
    log.append(f"{len(kept)} of {total} rows kept, {len(ADULT_FEATURES)} features; income >50K share {y.mean():.3f}")
    return x, y, tuple(log)


def _parse(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    paths = [_stored(folder, f) for f in FILES]
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else (-1, -1) for p in paths)
    x, y, log = _parse_cached(str(folder.resolve()), stamp)
    return x.copy(), y.copy(), list(log)


# ----------------------------------------------------------------------------------------------------------------------
# Splits


def split_indices(n: int, split: int) -> dict[str, np.ndarray]:
    """Row indices per split for ``split`` in 0..9: SenSR's 80/20 draw, val = last 10% of the 80% part."""
    order = np.random.RandomState(split).permutation(n)
    n_trainval = int((1 - TEST_FRACTION) * n)
    n_val = round(VAL_FRACTION * n_trainval)
    return {
        "train": order[: n_trainval - n_val],
        "val": order[n_trainval - n_val : n_trainval],
        "test": order[n_trainval:],
    }


def _standardise(x: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, str]:
    """``x (n, 41)`` with the continuous columns standardised by the ``train`` rows' mean and population sd."""
    k = len(CONTINUOUS)
    mean, sd = x[train, :k].mean(0), x[train, :k].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    x = x.copy()
    x[:, :k] = (x[:, :k] - mean) / sd
    stats = ", ".join(f"{c} {m:.4g}/{s:.4g}" for c, m, s in zip(CONTINUOUS, mean, sd, strict=True))
    return x, f"standardised with the train split's mean/sd: {stats}"


def _make_split(x: np.ndarray, y: np.ndarray, index: np.ndarray, bias: str) -> Split:
    cols = [ADULT_FEATURES.index(BIAS_COLUMNS[b]) for b in BIASES[bias]]
    b = torch.from_numpy(x[np.ix_(index, cols)].astype(np.int64))
    return Split((torch.from_numpy(x[index].astype(np.float32)),), torch.from_numpy(y[index]), b)


def _summary(name: str, split: Split) -> str:
    x = split.inputs[0]
    male, white = x[:, ADULT_FEATURES.index("sex_Male")] == 1, x[:, ADULT_FEATURES.index("race_White")] == 1
    share = {k: float(split.y[m].double().mean()) for k, m in (("male", male), ("female", ~male), ("white", white))}
    share["non-white"] = float(split.y[~white].double().mean())
    return (
        f"{name}: {len(split)} rows, >50K share {split.y.double().mean():.3f} (male {share['male']:.3f}, "
        f"female {share['female']:.3f}, white {share['white']:.3f}, non-white {share['non-white']:.3f}); "
        f"male {male.double().mean():.3f}, white {white.double().mean():.3f}"
    )


# ----------------------------------------------------------------------------------------------------------------------
# Public loader


def load_adult(
    data_root: str | Path | None, *, split: int = 0, bias: str = "gender", download: bool = False
) -> DataBundle:
    """Loads UCI Adult with SenSR's preprocessing (module docstring).

    data_root: folder holding ``adult/adult.data`` and ``adult/adult.test``; None: the shipped copy
    :data:`SHIPPED_DIR`. split: which of the 10 random 80/20 splits (0..9; the seed of the permutation).
    bias: ``"gender"`` (sex_Male), ``"race"`` (race_White) or ``"both"`` (columns gender, race).
    download: fetch missing files from UCI into ``data_root/adult/`` (sha256-checked; needs a data_root).

    Returns a DataBundle with inputs ``(x (n, 41) float32,)`` (:data:`ADULT_FEATURES`), ``y (n,)`` int64 income
    >50K, ``bias (n, 1)`` or ``(n, 2)`` int64 0/1.
    """
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split < N_SPLITS:
        raise ValueError(f"split must be an int in 0..{N_SPLITS - 1}, got {split!r}")
    if bias not in BIASES:
        raise ValueError(f"bias must be one of {list(BIASES)}, got {bias!r}")
    if data_root is None:
        if download:
            raise ValueError(
                "download=True (--download) needs a data_root (--data-root DIR) to download into; without one the "
                "copy shipped with csad is read"
            )
        folder, which = SHIPPED_DIR, "shipped copy"
    else:
        folder, which = Path(data_root) / "adult", "data root"
    log = download_adult(folder) if download else []
    x, y, parse_log = _parse(folder)
    log += parse_log
    index = split_indices(len(y), split)
    x, note = _standardise(x, index["train"])
    log.append(note)
    splits = {name: _make_split(x, y, idx, bias) for name, idx in index.items()}
    log += [_summary(name, splits[name]) for name in SPLITS]
    log_report(log, logger, warn=lambda line: line.startswith("rows kept with") or "differs" in line)
    sizes = split_sizes(splits)
    description = (
        f"UCI Adult ({which} {folder}): {len(y)} rows, {len(ADULT_FEATURES)} features (SenSR preprocessing), "
        f"income >50K, bias {' + '.join(BIASES[bias])}; split {split} of {N_SPLITS}, train/val/test {sizes}"
    )
    return DataBundle(
        name="adult",
        data_source="real",
        description=description,
        splits=splits,
        n_classes=2,
        bias_classes=(2,) * len(BIASES[bias]),
        bias_names=BIASES[bias],
        tolerance=0,
        test_is_bias_free=False,
        log=log,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Registration (python/data/registry.py)


def _check_split(config: TrainConfig) -> None:
    if config.split not in range(10) or isinstance(config.split, bool):
        raise ValueError(f"split must be an int in 0..9 (Adult's 10 random 80/20 splits), got {config.split!r}")


def _check_bias(config: TrainConfig) -> None:
    if config.dataset != "csv" and config.bias not in BIASES:  # csv names its own bias columns
        raise ValueError(f"bias must be gender, race or both (Adult), got {config.bias!r}")


def counterfactual_inputs(split: Split) -> list[tuple[torch.Tensor, ...]]:
    """``DataBundle.counterfactuals``: the six copies of ``split``'s ``x (n, 41)`` that S-Con and GR-Con compare
    (:func:`python.adult_metrics.counterfactual_copies`), each as inputs ``(x,)``."""
    from ..adult_metrics import counterfactual_copies  # it imports this module

    return [(copy,) for copy in counterfactual_copies(split.inputs[0])]


def extra_metrics(logits: tuple[torch.Tensor, ...], split: Split) -> dict[str, float]:
    """``DataBundle.extra_metrics``: the SenSR metrics from the target logits ``(n,)`` of ``split`` and of its
    :func:`counterfactual_inputs` (seven in all)."""
    from ..adult_metrics import metrics_from_predictions

    return metrics_from_predictions([predicted_classes(v) for v in logits], split.inputs[0], split.y)


def _load(config: TrainConfig) -> DataBundle:
    bundle = load_adult(config.data_root, split=config.split, bias=config.bias, download=config.download)
    bundle.extra_metrics, bundle.counterfactuals = extra_metrics, counterfactual_inputs
    return bundle


SPLIT = Setting("split", int, 0, Flag("Adult: which of the 10 random 80/20 splits (0-9, default 0)"),
                check=_check_split)
BIAS = Setting("bias", str | None, "gender",
               Flag("Adult: the bias attribute(s), gender, race or both, one bias head each (default gender)",
                    metavar="BIAS"), check=_check_bias)
SPEC = DatasetSpec(
    name="adult",
    data_root="DIR/adult/adult.data, adult.test (default: the copy shipped with csad)",
    summary="UCI Adult, the files shipped in python/data/adult_files/ without --data-root",
    load=_load,
    model=ModelSpec(branch=32, target=(32,), bias=(32,), estimator=(32, 32, 32)),
    features=dense_features,
    defaults={"lambda_": 10.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1},
    quick_train_rows=4096,
    settings=(SPLIT, BIAS, Setting("download", bool, False, Flag(
        "Adult: fetch adult.data/adult.test from UCI into --data-root/adult/ when missing (sha256 checked; fails fast "
        "offline)", switch="on"))),
)
