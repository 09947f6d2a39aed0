"""mPower finger tapping (PD vs control, age bias): loader for the Synapse export, and a simulated cohort.

Real data (``<data_root>/mpower/``, the Synapse export in its original format, see ``docs/mpower.md``)::

    tapping.csv          syn5511439 table: recordId, healthCode, tapping_results.json.TappingSamples (file handle id)
    demographics.csv     syn5511429 table: healthCode, age, professional-diagnosis
    tapping_samples/     <fileHandleId>.json per record, or any paths listed in
    filehandle_map.csv   (optional) fileHandleId,path  (paths relative to the mpower folder, or absolute)

Each JSON file is a list of taps ``{"TapTimeStamp": s, "TapCoordinate": "{x, y}", "TappedButtonId": ...}``.
A tap whose values are malformed, not finite or implausible (TapTimeStamp outside 0..1e9 s, a coordinate outside
+-1e4 points: :data:`TAP_TIME_RANGE_S`, :data:`MAX_ABS_COORDINATE`) is dropped and counted, naming file and record.
Without a data root the same files are written by :func:`simulate_cohort` (cached) and read by the same code.

Per record the model input is ``taps (6, max_taps)``: inter-tap interval in seconds (0 for the first tap),
``x / 320``, ``y / 568`` (iPhone points, 320 x 568 tapping view), one-hot button Left / Right / None; plus
``mask (max_taps,)``, true on real taps. The bias is the age bin (8 bins), the target professional diagnosis.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import write_dir_atomic
from ..metrics import fit_logistic_regression, roc_auc
from .base import DataBundle, Split, Tally

logger = logging.getLogger(__name__)

TAPPING_FILE_COLUMN = "tapping_results.json.TappingSamples"
TAPPING_COLUMNS = ("recordId", "healthCode", TAPPING_FILE_COLUMN)
DEMOGRAPHICS_COLUMNS = ("healthCode", "age", "professional-diagnosis")
CHANNELS = ("interval_s", "x", "y", "button_left", "button_right", "button_none")
SCREEN_POINTS = (320.0, 568.0)  # the tapping view of the app (iPhone 5 size, points): x / 320, y / 568
BUTTONS = {"TappedButtonLeft": 0, "TappedButtonRight": 1, "TappedButtonNone": 2}
AGE_BIN_EDGES = (35, 45, 50, 55, 60, 65, 70)  # bin = number of edges <= age
AGE_BIN_NAMES = ("<35", "35-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70+")
TEST_AGE_BINS = (2, 3, 4, 5, 6, 7)  # 45-49 ... 70+: the cells of the bias-free test set
VALID_AGE = (18, 120)  # mPower enrolled adults; ages outside are data-entry errors
# Plausibility bounds of a tap (a tap outside them is dropped and counted like a malformed one): TapTimeStamp is
# device uptime in seconds, 0..1e9 (31.7 years); TapCoordinate in points within +-1e4 of the view's origin (the view
# is 320 x 568). Inside them every feature is finite in float32.
TAP_TIME_RANGE_S = (0.0, 1e9)
MAX_ABS_COORDINATE = 1e4
_TRUE = {"true", "t", "1", "1.0", "yes", "y"}
_FALSE = {"false", "f", "0", "0.0", "no", "n"}


def age_bin(age: int) -> int:
    """Age in years -> bin 0..7 (<35, 35-44, 45-49, 50-54, 55-59, 60-64, 65-69, 70+)."""
    return sum(age >= e for e in AGE_BIN_EDGES)


# ----------------------------------------------------------------------------------------------------------------------
# Bookkeeping: every skipped or changed item is counted, with examples, and shows up in ``DataBundle.log``.


class _RecordError(Exception):
    """A record that cannot be used; ``reason`` is the log message, the text the example."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# ----------------------------------------------------------------------------------------------------------------------
# CSV and JSON parsing


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV as ``(line number, {column: value})`` for the ``required`` columns (others are ignored).

    Raises FileNotFoundError (missing file), ValueError naming the file and column (missing column) or the file and
    line (malformed row: bad quoting, or a field count that differs from the header's).
    """
    if not path.is_file():
        raise FileNotFoundError(f"mPower: {path} not found")
    rows: list[tuple[int, dict[str, str]]] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header with columns {list(required)}") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise ValueError(f"{path} line 1: malformed CSV header: {e}") from e
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing required column {missing[0]!r} (required: {list(required)})")
        index = {c: header.index(c) for c in required}
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return rows
            except (csv.Error, UnicodeDecodeError) as e:
                raise ValueError(f"{path} line {line}: malformed CSV: {e}") from e
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path} line {line}: malformed CSV row: {len(row)} fields, header has {len(header)}")
            rows.append((line, {c: row[i].strip() for c, i in index.items()}))


def _parse_age(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value != int(value) or not VALID_AGE[0] <= value <= VALID_AGE[1]:
        return None
    return int(value)


def _parse_bool(text: str) -> bool | None:
    low = text.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else None


def _read_demographics(path: Path, tally: Tally) -> dict[str, tuple[int, bool]]:
    """healthCode -> (age, PD) from the demographics CSV; invalid and duplicate rows are counted in ``tally``."""
    subjects: dict[str, tuple[int, bool]] = {}
    for line, row in _read_csv(path, DEMOGRAPHICS_COLUMNS):
        where = f"{path.name} line {line}"
        code, age, pd = row["healthCode"], _parse_age(row["age"]), _parse_bool(row["professional-diagnosis"])
        if not code:
            tally.add("demographics rows skipped: empty healthCode", where)
        elif age is None:
            tally.add(
                f"demographics rows skipped: missing or invalid age (integer {VALID_AGE[0]}-{VALID_AGE[1]})",
                f"{where}: age={row['age']!r}",
            )
        elif pd is None:
            tally.add(
                "demographics rows skipped: missing or invalid professional-diagnosis (true/false)",
                f"{where}: professional-diagnosis={row['professional-diagnosis']!r}",
            )
        elif code in subjects:
            same = subjects[code] == (age, pd)
            tally.add(
                f"demographics rows skipped: repeated healthCode ({'same' if same else 'different'} values, "
                "first row kept)",
                f"{where}: healthCode={code}",
            )
        else:
            subjects[code] = (age, pd)
    return subjects


def _parse_coordinate(value: object) -> tuple[float, float]:
    """``"{160.5, 402}"`` (or ``[160.5, 402]``) -> (160.5, 402.0); ValueError when malformed or non-finite."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("{") and text.endswith("}")):
            raise ValueError(f"TapCoordinate {value!r} is not '{{x, y}}'")
        parts = text[1:-1].split(",")
    elif isinstance(value, list):
        parts = value
    else:
        raise ValueError(f"TapCoordinate {value!r} is not '{{x, y}}'")
    if len(parts) != 2:
        raise ValueError(f"TapCoordinate {value!r} is not '{{x, y}}'")
    x, y = float(parts[0]), float(parts[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"TapCoordinate {value!r} is not finite")
    if not (abs(x) <= MAX_ABS_COORDINATE and abs(y) <= MAX_ABS_COORDINATE):
        raise ValueError(f"TapCoordinate {value!r} is outside +-{MAX_ABS_COORDINATE:g} points")
    return x, y


def _parse_tap(entry: object) -> tuple[float, float, float, int]:
    """One JSON tap -> (time s, x, y, button index); ValueError naming what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError(f"tap {entry!r} is not an object")
    try:
        stamp, coord, button = entry["TapTimeStamp"], entry["TapCoordinate"], entry["TappedButtonId"]
    except KeyError as e:
        raise ValueError(f"tap lacks {e.args[0]}") from None
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float, str)):
        raise ValueError(f"TapTimeStamp {stamp!r} is not a number")
    t = float(stamp)
    if not math.isfinite(t):
        raise ValueError(f"TapTimeStamp {stamp!r} is not finite")
    if not TAP_TIME_RANGE_S[0] <= t <= TAP_TIME_RANGE_S[1]:
        raise ValueError(f"TapTimeStamp {stamp!r} is outside {TAP_TIME_RANGE_S[0]:g}..{TAP_TIME_RANGE_S[1]:g} s")
    if button not in BUTTONS:
        raise ValueError(f"TappedButtonId {button!r} is not one of {list(BUTTONS)}")
    x, y = _parse_coordinate(coord)
    return t, x, y, BUTTONS[button]


def _read_taps(path: Path, where: str, tally: Tally) -> np.ndarray:
    """Taps of one record's JSON file as ``(k, 4)`` float64 rows (time, x, y, button); malformed taps are counted.

    ``where`` names the record (tapping.csv line and recordId) in messages. Raises _RecordError when the file is
    missing, is not a JSON list, or holds no usable tap.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _RecordError("records skipped: missing tapping JSON file", f"{path} [{where}]") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _RecordError("records skipped: unreadable tapping JSON file", f"{path.name}: {e} [{where}]") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise _RecordError("records skipped: corrupt JSON", f"{path.name} line {e.lineno}: {e.msg} [{where}]") from None
    except RecursionError:  # nested deeper than Python's recursion limit: no tap file looks like that
        raise _RecordError("records skipped: corrupt JSON", f"{path.name}: nested too deeply [{where}]") from None
    except ValueError as e:  # e.g. an integer of more digits than int() reads
        raise _RecordError("records skipped: corrupt JSON", f"{path.name}: {e} [{where}]") from None
    if not isinstance(entries, list):
        raise _RecordError("records skipped: corrupt JSON", f"{path.name}: not a list of taps [{where}]")
    rows = []
    for i, entry in enumerate(entries):
        try:
            rows.append(_parse_tap(entry))
        except (ValueError, TypeError, OverflowError) as e:  # OverflowError: float() of a huge JSON integer
            tally.add("malformed taps dropped (rest of the record kept)", f"{path.name} tap {i}: {e} [{where}]")
    if not rows:
        raise _RecordError("records skipped: no taps", f"{path.name} [{where}]")
    return np.asarray(rows, dtype=np.float64)


def _tap_features(rows: np.ndarray, max_taps: int, record: str, tally: Tally) -> tuple[np.ndarray, np.ndarray]:
    """``(k, 4)`` taps -> features ``(6, max_taps)`` float32 and mask ``(max_taps,)`` bool (see CHANNELS).

    Taps are sorted by time (records that needed it are counted) and cut after ``max_taps`` (counted too).
    """
    t = rows[:, 0]
    if np.any(np.diff(t) < 0):
        tally.add("records whose taps were sorted by TapTimeStamp", f"record {record}")
        rows = rows[np.argsort(t, kind="stable")]
    if len(rows) > max_taps:
        tally.add(f"records truncated to max_taps={max_taps} taps", f"record {record} ({len(rows)} taps)")
        rows = rows[:max_taps]
    k = len(rows)
    feats = np.zeros((len(CHANNELS), max_taps), dtype=np.float32)
    feats[0, 1:k] = np.diff(rows[:, 0])
    feats[1, :k] = rows[:, 1] / SCREEN_POINTS[0]
    feats[2, :k] = rows[:, 2] / SCREEN_POINTS[1]
    feats[3 + rows[:, 3].astype(np.int64), np.arange(k)] = 1.0
    mask = np.zeros(max_taps, dtype=bool)
    mask[:k] = True
    return feats, mask


def _file_handle(text: str) -> str:
    """A file-handle id as written by pandas (``"123"``, ``"123.0"``, ``""``, ``"nan"``) -> ``"123"`` or ``""``."""
    text = text.strip()
    if text.lower() in ("", "nan", "none", "null"):
        return ""
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if math.isfinite(value) and value == int(value) else text


def _locator(root: Path) -> Callable[[str], Path]:
    """File-handle id -> JSON path: ``filehandle_map.csv`` when present, else ``tapping_samples/<id>.json``."""
    folder = root / "tapping_samples"
    map_path = root / "filehandle_map.csv"
    mapping: dict[str, Path] = {}
    if map_path.is_file():
        for _, row in _read_csv(map_path, ("fileHandleId", "path")):
            p = Path(row["path"])
            mapping[_file_handle(row["fileHandleId"])] = p if p.is_absolute() else root / p
    elif not folder.is_dir():
        raise FileNotFoundError(
            f"mPower: neither the folder {folder} (<fileHandleId>.json files) nor {map_path} "
            "(columns fileHandleId,path) exists"
        )
    return lambda handle: mapping.get(handle, folder / f"{handle}.json")


# ----------------------------------------------------------------------------------------------------------------------
# Records -> arrays


@dataclass
class _Records:
    """Usable records in file order: features ``(n, 6, T)``, mask ``(n, T)``, healthCode, age, PD."""

    taps: np.ndarray
    mask: np.ndarray
    codes: list[str]
    age: np.ndarray
    pd: np.ndarray


def _read_records(root: Path, max_taps: int, tally: Tally) -> tuple[_Records, int]:
    """Reads tapping.csv, demographics.csv and the JSON files under ``root``; returns the records and the row count."""
    table = _read_csv(root / "tapping.csv", TAPPING_COLUMNS)
    subjects = _read_demographics(root / "demographics.csv", tally)
    locate = _locator(root)
    seen: set[str] = set()
    taps, masks, codes = [], [], []
    for line, row in table:
        record, code, handle = row["recordId"], row["healthCode"], _file_handle(row[TAPPING_FILE_COLUMN])
        where = f"tapping.csv line {line} (record {record})"
        if record in seen:
            tally.add("records skipped: repeated recordId", where)
            continue
        seen.add(record)
        if code not in subjects:
            tally.add("records skipped: healthCode without usable demographics", f"{where}: healthCode={code!r}")
            continue
        if not handle:
            tally.add(f"records skipped: empty {TAPPING_FILE_COLUMN}", where)
            continue
        try:
            rows = _read_taps(locate(handle), where, tally)
        except _RecordError as e:
            tally.add(e.reason, str(e))
            continue
        feats, mask = _tap_features(rows, max_taps, record, tally)
        taps.append(feats)
        masks.append(mask)
        codes.append(code)
    if not codes:
        raise ValueError(
            f"mPower: none of the {len(table)} records in {root / 'tapping.csv'} is usable: "
            + " | ".join(tally.lines())
        )
    age = np.array([subjects[c][0] for c in codes], dtype=np.int64)
    pd = np.array([subjects[c][1] for c in codes], dtype=np.int64)
    return _Records(np.stack(taps), np.stack(masks), codes, age, pd), len(table)


# ----------------------------------------------------------------------------------------------------------------------
# Subject-wise splits


def _split_records(rec: _Records, per_cell: int, val_fraction: float, seed: int) -> tuple[dict[str, np.ndarray], str]:
    """Record indices per split: test = age-balanced, one record per subject; the other subjects -> train / val.

    Returns the indices (ascending) and a log line about the test subjects' unused records.
    """
    first: dict[str, int] = {}
    for i, code in enumerate(rec.codes):
        first.setdefault(code, i)
    subjects = list(first)
    bins = np.array([age_bin(int(rec.age[first[s]])) for s in subjects])
    pd = np.array([int(rec.pd[first[s]]) for s in subjects])
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for b in TEST_AGE_BINS:
        for label in (1, 0):
            cell = np.flatnonzero((bins == b) & (pd == label))
            if len(cell) < per_cell:
                counts = {
                    f"{AGE_BIN_NAMES[c]} {'PD' if y else 'control'}": int(np.sum((bins == c) & (pd == y)))
                    for c in TEST_AGE_BINS
                    for y in (1, 0)
                }
                raise ValueError(
                    f"mPower test cell age {AGE_BIN_NAMES[b]} {'PD' if label else 'control'}: needs "
                    f"per_cell={per_cell} subjects, only {len(cell)} usable (cells: {counts}); "
                    "lower per_cell"
                )
            test.extend(rng.choice(cell, per_cell, replace=False).tolist())
    test_set = set(test)
    pool = np.array([s for s in range(len(subjects)) if s not in test_set], dtype=np.int64)
    if len(pool) < 2:
        raise ValueError(f"mPower: only {len(pool)} subjects left for train/val after the test set; lower per_cell")
    pool = rng.permutation(pool)
    n_val = min(max(1, round(val_fraction * len(pool))), len(pool) - 1)
    split_of = {subjects[s]: "val" for s in pool[:n_val]} | {subjects[s]: "train" for s in pool[n_val:]}
    index = {
        "test": np.sort(np.array([first[subjects[s]] for s in test], dtype=np.int64)),
        "train": np.array([i for i, c in enumerate(rec.codes) if split_of.get(c) == "train"], dtype=np.int64),
        "val": np.array([i for i, c in enumerate(rec.codes) if split_of.get(c) == "val"], dtype=np.int64),
    }
    unused = len(rec.codes) - sum(len(v) for v in index.values())
    note = f"records not used: {unused} (further records of the {len(test)} test subjects; the test set takes one each)"
    return index, note


def _make_split(rec: _Records, index: np.ndarray) -> Split:
    bias = np.array([age_bin(int(a)) for a in rec.age[index]], dtype=np.int64).reshape(-1, 1)
    inputs = (torch.from_numpy(rec.taps[index]), torch.from_numpy(rec.mask[index]))
    return Split(inputs, torch.from_numpy(rec.pd[index]), torch.from_numpy(bias))


def _split_summary(name: str, split: Split, codes: list[str]) -> str:
    bins = np.bincount(split.bias[:, 0].numpy(), minlength=8)
    pd_by_bin = np.bincount(split.bias[:, 0].numpy(), weights=split.y.numpy().astype(float), minlength=8)
    share = " ".join(f"{AGE_BIN_NAMES[b]}:{pd_by_bin[b] / bins[b]:.2f}" for b in range(8) if bins[b])
    return (
        f"{name}: {len(split)} records of {len(set(codes))} subjects, PD share {split.y.float().mean():.3f}; "
        f"PD share per age bin {share}"
    )


def _load_root(
    root: Path, source: str, max_taps: int, per_cell: int, val_fraction: float, seed: int, label: str
) -> DataBundle:
    """The one reading path for real and simulated data: ``root`` is the ``mpower`` folder."""
    tally = Tally()
    rec, n_rows = _read_records(root, max_taps, tally)
    index, note = _split_records(rec, per_cell, val_fraction, seed)
    splits = {name: _make_split(rec, idx) for name, idx in index.items()}
    n_skipped = sum(n for m, n in tally.counts.items() if m.startswith("records skipped"))
    log = [f"{root / 'tapping.csv'}: {n_rows} records, {len(rec.codes)} usable, {n_skipped} skipped"]
    log += tally.lines()
    log.append(note)
    log += [_split_summary(n, splits[n], [rec.codes[i] for i in index[n]]) for n in ("train", "val", "test")]
    for line in log:
        (logger.warning if "skipped" in line.split(":")[0] or "dropped" in line else logger.info)(line)
    description = (
        f"mPower tapping, {label}: {len(rec.codes)} records of {len(set(rec.codes))} subjects, "
        f"PD vs control, bias age (8 bins); test = {per_cell} PD + {per_cell} controls per age interval "
        "45-49..70+"
    )
    return DataBundle(
        name="mpower",
        data_source=source,
        description=description,
        splits=splits,
        n_classes=2,
        bias_classes=(8,),
        bias_names=("age",),
        tolerance=0,
        test_is_bias_free=True,
        log=log,
        within_bin_head=0,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Simulator


SIMULATOR_VERSION = 4


@dataclass(frozen=True)
class SimulatorParams:
    """Physiology and cohort composition of the simulated mPower tapping cohort (tables in docs/mpower.md).

    Cohort. age_bin_weights: share of subjects per age bin (8 bins, <35 ... 70+; normalised). pd_share: PD share per
    age bin; subjects are allocated to (bin, PD) cells by quota (largest remainder), ages uniform within the bin.
    age_range: youngest age of bin 0 and oldest of bin 7. records_per_subject: probabilities of 1, 2, 3 records.
    duration_s: length of a tapping test (taps after it are not recorded).

    Ageing (everyone). interval_at_20: mean inter-tap interval (s) at age 20. slowing_per_decade: multiplicative
    growth of that mean per decade of age, late_slowing_per_decade: further growth per decade past 60 (the decline
    steepens). speed_sd: log-sd of a subject's speed around the age mean. cv_base, cv_per_decade,
    late_cv_per_decade: coefficient of variation of intervals at age 20, its growth per decade and its further
    growth per decade past 60. scatter_sd,
    scatter_per_decade: sd (points) of on-target tap positions around the finger's resting point, and its growth.
    rest_sd: sd (points) of a subject's resting point around the button centres (per axis).
    session_sd: log-sd of a record's speed and severity around the subject's (session noise).

    Parkinson's (each sign scales with the patient's severity ~ Beta(*severity_beta), times a per-sign factor
    exp(N(0, sign_sd)): many patients are mild). pd_slowing: relative lengthening of the mean interval at severity
    1 (bradykinesia; the same direction as ageing). pd_cv: added CV at severity 1. pd_decrement: relative lengthening
    of intervals from start to end of the test at severity 1 (control_decrement for everyone). pd_freezes: expected
    freezing pauses per test at severity 1 (control_freezes for everyone), each freeze_s long (uniform range).
    pd_offtarget: probability that a tap misses the buttons at severity 1 (control_offtarget for everyone).
    tremor_share: share of patients with tremor; pd_tremor_pts: amplitude (points) of the 4-6 Hz (tremor_hz)
    oscillation added to tap coordinates at severity 1.
    """

    age_bin_weights: tuple[float, ...] = (0.144, 0.112, 0.16, 0.104, 0.096, 0.104, 0.12, 0.16)
    pd_share: tuple[float, ...] = (0.03, 0.10, 0.25, 0.40, 0.50, 0.60, 0.65, 0.75)
    age_range: tuple[int, int] = (18, 85)
    records_per_subject: tuple[float, float, float] = (0.5, 0.3, 0.2)
    duration_s: float = 20.0
    interval_at_20: float = 0.14
    slowing_per_decade: float = 0.10
    late_slowing_per_decade: float = 0.12
    speed_sd: float = 0.12
    cv_base: float = 0.10
    cv_per_decade: float = 0.03
    late_cv_per_decade: float = 0.03
    scatter_sd: float = 6.0
    scatter_per_decade: float = 5.0
    rest_sd: float = 6.0
    session_sd: float = 0.06
    severity_beta: tuple[float, float] = (1.5, 3.0)
    sign_sd: float = 0.5
    pd_slowing: float = 0.3
    pd_cv: float = 0.08
    pd_decrement: float = 0.3
    control_decrement: float = 0.03
    pd_freezes: float = 1.0
    control_freezes: float = 0.1
    freeze_s: tuple[float, float] = (0.4, 1.5)
    pd_offtarget: float = 0.03
    control_offtarget: float = 0.01
    tremor_share: float = 0.7
    pd_tremor_pts: float = 3.0
    tremor_hz: tuple[float, float] = (4.0, 6.0)


@dataclass(frozen=True)
class CohortSpec:
    """A named simulated cohort: number of subjects, generator seed, and the test set's subjects per cell."""

    n_subjects: int
    seed: int
    per_cell: int


COHORTS = {
    "default": CohortSpec(n_subjects=1250, seed=20240601, per_cell=30),
    "quick": CohortSpec(n_subjects=300, seed=20240601, per_cell=6),
}
# Buttons of the app's tapping view (points, 320 x 568): x0, y0, x1, y1.
BUTTON_RECTS = ((38.0, 410.0, 138.0, 510.0), (183.0, 410.0, 283.0, 510.0))
_SIGNS = ("slowing", "cv", "decrement", "freezes", "offtarget", "tremor")


def _cell_counts(n: int, p: SimulatorParams) -> np.ndarray:
    """Subjects per (age bin, PD) cell ``(8, 2)`` summing to ``n`` (largest remainder quota)."""
    w = np.asarray(p.age_bin_weights, dtype=np.float64)
    q = np.asarray(p.pd_share, dtype=np.float64)
    share = np.stack([w * (1 - q), w * q], axis=1).ravel()
    raw = n * share / share.sum()
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(counts - raw)[: n - counts.sum()]] += 1
    return counts.reshape(8, 2)


def _bin_ages(b: int, p: SimulatorParams) -> tuple[int, int]:
    lo = p.age_range[0] if b == 0 else AGE_BIN_EDGES[b - 1]
    hi = p.age_range[1] if b == 7 else AGE_BIN_EDGES[b] - 1
    return lo, hi


@dataclass
class _Subject:
    code: str
    age: int
    pd: bool
    interval: float  # mean inter-tap interval at the start of a test, s
    cv: float
    scatter: float
    signs: dict[str, float]  # severity per PD sign (0 for controls)
    tremor_hz: float
    rest: tuple[float, float]  # finger resting offset from the button centres, points


def _make_subject(rng: np.random.Generator, age: int, pd: bool, p: SimulatorParams) -> _Subject:
    decades = (age - 20) / 10
    late = max(0.0, (age - 60) / 10)  # decades past 60, where the decline steepens
    severity = rng.beta(*p.severity_beta) if pd else 0.0
    signs = {s: severity * math.exp(rng.normal(0, p.sign_sd)) for s in _SIGNS}
    if rng.random() >= p.tremor_share:
        signs["tremor"] = 0.0
    return _Subject(
        code=_uuid(rng),
        age=age,
        pd=pd,
        interval=p.interval_at_20
        * (1 + p.slowing_per_decade) ** decades
        * (1 + p.late_slowing_per_decade) ** late
        * (1 + p.pd_slowing * signs["slowing"])
        * math.exp(rng.normal(0, p.speed_sd)),
        cv=p.cv_base + p.cv_per_decade * decades + p.late_cv_per_decade * late + p.pd_cv * signs["cv"],
        scatter=p.scatter_sd + p.scatter_per_decade * decades,
        signs=signs,
        tremor_hz=rng.uniform(*p.tremor_hz),
        rest=(rng.normal(0, p.rest_sd), rng.normal(0, p.rest_sd)),
    )


def _simulate_taps(rng: np.random.Generator, s: _Subject, p: SimulatorParams) -> list[dict[str, object]]:
    """One 20 s test of alternate two-finger tapping -> the record's JSON list of taps."""
    sess = math.exp(rng.normal(0, p.session_sd))
    sev = {k: v * math.exp(rng.normal(0, p.session_sd)) for k, v in s.signs.items()}
    mu, cv = s.interval * sess, s.cv * math.exp(rng.normal(0, p.session_sd))
    n = int(2 * p.duration_s / mu) + 20
    shape = 1 / cv**2
    base = rng.gamma(shape, mu / shape, n)
    progress = np.clip(np.cumsum(base) / p.duration_s, 0, 1)
    intervals = base * (1 + (p.control_decrement + p.pd_decrement * sev["decrement"]) * progress)
    n_freezes = rng.poisson(p.control_freezes + p.pd_freezes * sev["freezes"])
    at = np.searchsorted(np.cumsum(intervals), rng.uniform(0, p.duration_s, n_freezes))  # uniform over the test
    intervals[np.minimum(at, n - 1)] += rng.uniform(*p.freeze_s, n_freezes)
    t = rng.uniform(0.2, 0.8) + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
    t = t[t < p.duration_s]
    k = len(t)
    side = (np.arange(k) + rng.integers(2)) % 2
    rects = np.asarray(BUTTON_RECTS)
    centre = np.stack([(rects[side, 0] + rects[side, 2]) / 2, (rects[side, 1] + rects[side, 3]) / 2], axis=1)
    xy = centre + np.asarray(s.rest) + rng.normal(0, s.scatter, (k, 2))
    phase = 2 * np.pi * s.tremor_hz * t + rng.uniform(0, 2 * np.pi, 2)[:, None]
    xy += p.pd_tremor_pts * sev["tremor"] * np.stack([np.sin(phase[0]), 0.7 * np.sin(phase[1])], axis=1)
    off = rng.random(k) < p.control_offtarget + p.pd_offtarget * sev["offtarget"]
    angle, radius = rng.uniform(0, 2 * np.pi, k), rng.uniform(75, 130, k)
    xy[off] = centre[off] + np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[off]
    xy = np.round(np.clip(xy, 0, SCREEN_POINTS) * 2) / 2
    names = ["TappedButtonNone"] * k
    for b, (x0, y0, x1, y1) in enumerate(BUTTON_RECTS):
        for i in np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)):
            names[i] = ("TappedButtonLeft", "TappedButtonRight")[b]
    start = rng.uniform(1e3, 5e5)  # device uptime at the start, like the app's TapTimeStamp
    return [
        {
            "TapCoordinate": f"{{{xy[i, 0]:g}, {xy[i, 1]:g}}}",
            "TapTimeStamp": round(start + t[i], 6),
            "TappedButtonId": names[i],
        }
        for i in range(k)
    ]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def simulate_cohort(out_dir: str | Path, n_subjects: int, seed: int, params: SimulatorParams | None = None) -> Path:
    """Writes a simulated cohort in the real export's schema: ``out_dir/mpower/{tapping.csv, demographics.csv,
    tapping_samples/<fileHandleId>.json}`` plus the manifest ``out_dir/cohort.json``; returns ``out_dir``.

    ``n_subjects`` subjects (1-3 records each) allocated to (age bin, PD) cells by ``params`` (see SimulatorParams);
    deterministic given ``seed``. Not atomic: use :func:`prepare_simulated_cohort` for a cache.
    """
    p = params or SimulatorParams()
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    out = Path(out_dir)
    (out / "mpower" / "tapping_samples").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    subjects = []
    for b, (n_control, n_pd) in enumerate(_cell_counts(n_subjects, p)):
        lo, hi = _bin_ages(b, p)
        for pd, count in ((False, n_control), (True, n_pd)):
            subjects += [_make_subject(rng, int(rng.integers(lo, hi + 1)), pd, p) for _ in range(count)]
    _write_records(out / "mpower", subjects, rng, p)
    _write_demographics(out / "mpower" / "demographics.csv", subjects, rng)
    (out / "cohort.json").write_text(json.dumps(_manifest(n_subjects, seed, p), indent=1), encoding="utf-8")
    return out


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _write_records(root: Path, subjects: list[_Subject], rng: np.random.Generator, p: SimulatorParams) -> None:
    """1-3 records per subject, in an order that interleaves subjects (like upload order): JSON files + tapping.csv."""
    n_records = rng.choice(3, len(subjects), p=np.asarray(p.records_per_subject) / sum(p.records_per_subject)) + 1
    owners = rng.permutation(np.repeat(np.arange(len(subjects)), n_records))
    rows = []
    for i, owner in enumerate(owners):
        s = subjects[owner]
        handle = 5_000_000 + i
        taps = _simulate_taps(rng, s, p)
        (root / "tapping_samples" / f"{handle}.json").write_text(
            json.dumps(taps, separators=(",", ":")), encoding="utf-8"
        )
        rows.append([f"{i}_0", _uuid(rng), s.code, 1426000000000 + 60_000 * i, "version 1.0, build 7", handle, ""])
    header = ["", "recordId", "healthCode", "createdOn", "appVersion", TAPPING_FILE_COLUMN, "medTimepoint"]
    _write_csv(root / "tapping.csv", header, rows)


def _write_demographics(path: Path, subjects: list[_Subject], rng: np.random.Generator) -> None:
    rows = [
        [
            f"{j}_0",
            _uuid(rng),
            subjects[k].code,
            subjects[k].age,
            ("Male", "Female")[int(rng.integers(2))],
            subjects[k].pd,
        ]
        for j, k in enumerate(rng.permutation(len(subjects)))
    ]
    _write_csv(path, ["", "recordId", "healthCode", "age", "gender", "professional-diagnosis"], rows)


def _manifest(n_subjects: int, seed: int, p: SimulatorParams) -> dict[str, object]:
    return json.loads(
        json.dumps(
            {"simulator_version": SIMULATOR_VERSION, "n_subjects": n_subjects, "seed": seed, "params": asdict(p)}
        )
    )


def prepare_simulated_cohort(
    directory: str | Path, n_subjects: int, seed: int, params: SimulatorParams | None = None
) -> Path:
    """Returns ``directory`` holding the simulated cohort, generating it unless its ``cohort.json`` matches.

    Generation writes to a temporary sibling folder and renames it into place, so an interrupted run is never reused.
    """
    p = params or SimulatorParams()
    target = Path(directory)
    want = _manifest(n_subjects, seed, p)
    if _manifest_matches(target, want):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One generation at a time: a second process (e.g. two runs started together) waits, then finds the cohort made;
    # without the lock it would generate again and replace the folder while the first one reads it.
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _manifest_matches(target, want):
            _generate(target, want, n_subjects, seed, p)
    return target


def _generate(target: Path, want: dict[str, object], n_subjects: int, seed: int, p: SimulatorParams) -> None:
    def fill(folder: Path) -> None:
        started = time.perf_counter()
        simulate_cohort(folder, n_subjects, seed, p)
        logger.info(
            "simulated mPower cohort (%d subjects) in %.1f s -> %s", n_subjects, time.perf_counter() - started, target
        )

    write_dir_atomic(target, fill)


def _manifest_matches(directory: Path, want: dict[str, object]) -> bool:
    try:
        return json.loads((directory / "cohort.json").read_text(encoding="utf-8")) == want
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------------------------------
# Public loader


def load_mpower(
    data_root: str | Path | None,
    *,
    cache_dir: str | Path = "data_cache/mpower_sim",
    max_taps: int = 128,
    per_cell: int | None = None,
    val_fraction: float = 0.15,
    split_seed: int = 0,
    cohort: str = "default",
) -> DataBundle:
    """Loads mPower tapping: the real export under ``data_root/mpower/``, or (``data_root=None``) a simulated cohort.

    Splits are subject-wise. test: ``per_cell`` PD and ``per_cell`` control subjects (one record each, the first
    in tapping.csv) from each age interval 45-49, 50-54, 55-59, 60-64, 65-69, 70+, drawn with ``split_seed``.
    The other subjects, all their records: ``val`` (``val_fraction`` of them), ``train`` (the rest).
    ``per_cell`` None means 30 (real data, default cohort) or the cohort's own (quick: 6).
    ``cohort``: ``"default"`` or ``"quick"`` (simulated only; cached under ``cache_dir/<cohort>``).

    Returns a DataBundle with inputs ``(taps (n, 6, max_taps) float32, mask (n, max_taps) bool)``, ``y (n,)``
    int64 PD, ``bias (n, 1)`` int64 age bin 0..7.
    """
    if max_taps < 2:
        raise ValueError(f"max_taps must be >= 2, got {max_taps}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if per_cell is not None and per_cell < 1:
        raise ValueError(f"per_cell must be >= 1, got {per_cell}")
    if data_root is None:
        if cohort not in COHORTS:
            raise ValueError(f"cohort must be one of {list(COHORTS)}, got {cohort!r}")
        spec = COHORTS[cohort]
        data_root = prepare_simulated_cohort(Path(cache_dir) / cohort, spec.n_subjects, spec.seed)
        per_cell = spec.per_cell if per_cell is None else per_cell
    root = Path(data_root) / "mpower"
    if not (root / "tapping.csv").is_file():
        raise FileNotFoundError(
            f"mPower: {root / 'tapping.csv'} not found. Expected the Synapse export under {root}/: tapping.csv "
            "(syn5511439), demographics.csv (syn5511429) and tapping_samples/<fileHandleId>.json (or "
            "filehandle_map.csv); see docs/mpower.md. Omit --data-root to use the simulated cohort."
        )
    simulated = (Path(data_root) / "cohort.json").is_file()
    label = f"simulated cohort {Path(data_root)}" if simulated else f"Synapse export {root}"
    return _load_root(
        root,
        "simulated" if simulated else "real",
        max_taps,
        30 if per_cell is None else per_cell,
        val_fraction,
        split_seed,
        label,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Shortcut check: hand features + logistic regression, AUC on the age-confounded val vs the bias-free test split


def hand_features(taps: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-record summary features ``(n,)`` each from ``taps (n, 6, T)`` and ``mask (n, T)``.

    n_taps; mean_interval, cv (of intervals after the first tap); decrement (log of mean interval in the last
    third over the first third); freezes (intervals > 3x the record's median); off_target (share of None taps);
    scatter (mean sd of x and y, in points, over taps on each button).
    """
    m = mask.double()
    n = m.sum(1)
    iv_mask = m.clone()
    iv_mask[:, 0] = 0
    iv = taps[:, 0].double()
    k = iv_mask.sum(1).clamp_min(1)
    mean = (iv * iv_mask).sum(1) / k
    sd = (((iv - mean[:, None]) ** 2 * iv_mask).sum(1) / k).sqrt()
    pos = torch.cumsum(iv_mask, 1) / k[:, None]
    first, last = iv_mask * (pos <= 1 / 3), iv_mask * (pos > 2 / 3)
    dec = ((iv * last).sum(1) / last.sum(1).clamp_min(1)).clamp_min(1e-3).log() - (
        (iv * first).sum(1) / first.sum(1).clamp_min(1)
    ).clamp_min(1e-3).log()
    median = torch.where(iv_mask.bool(), iv, torch.nan).nanmedian(1).values.nan_to_num(0)
    freezes = ((iv > 3 * median[:, None]) & iv_mask.bool()).double().sum(1)
    off = (taps[:, 5].double() * m).sum(1) / n.clamp_min(1)
    scale = torch.tensor(SCREEN_POINTS, dtype=torch.float64)[None, :, None]
    xy = taps[:, 1:3].double() * scale
    scatter = torch.zeros_like(n)
    for b in (3, 4):
        w = taps[:, b].double() * m
        cnt = w.sum(1).clamp_min(1)
        mu = (xy * w[:, None]).sum(2) / cnt[:, None]
        scatter += ((((xy - mu[..., None]) ** 2) * w[:, None]).sum(2) / cnt[:, None]).sqrt().mean(1) / 2
    return {
        "n_taps": n,
        "mean_interval": mean,
        "cv": sd / mean.clamp_min(1e-6),
        "decrement": dec,
        "freezes": freezes,
        "off_target": off,
        "scatter": scatter,
    }


SHORTCUT_MODELS = {
    "age bin only": ("age",),
    "speed only (mean interval, n taps)": ("mean_interval", "n_taps"),
    "PD signs only (cv, decrement, freezes, off-target, scatter)": (
        "cv",
        "decrement",
        "freezes",
        "off_target",
        "scatter",
    ),
    "all hand features": ("mean_interval", "n_taps", "cv", "decrement", "freezes", "off_target", "scatter"),
}
REWEIGHTED_MODEL = "all hand features, age-balanced sample weights"


def _balancing_weights(bias: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sample weights ``(n,)`` giving PD and controls equal total weight within each age bin (bias ``(n,)``)."""
    cell = bias * 2 + y
    counts = torch.bincount(cell, minlength=16).double()
    w = 1 / counts[cell]
    return w * len(w) / w.sum()


def shortcut_check(bundle: DataBundle) -> dict[str, tuple[float, float]]:
    """AUC on (val, test) of logistic regressions (:func:`python.metrics.fit_logistic_regression`) on hand features,
    trained on the train split.

    One model per SHORTCUT_MODELS entry, plus REWEIGHTED_MODEL: all features with sample weights that make PD
    independent of the age bin in training (a reference for what removing the shortcut can reach).
    """
    feats = {}
    for name, split in bundle.splits.items():
        feats[name] = hand_features(*split.inputs) | {"age": split.bias[:, 0].double()}
    train = bundle.splits["train"]
    runs = [(m, cols, None) for m, cols in SHORTCUT_MODELS.items()]
    runs.append((REWEIGHTED_MODEL, SHORTCUT_MODELS["all hand features"], _balancing_weights(train.bias[:, 0], train.y)))
    out = {}
    for model, cols, weight in runs:
        probe = fit_logistic_regression(torch.stack([feats["train"][c] for c in cols], 1), train.y, 2,
                                        sample_weight=weight)
        logits = {s: probe(torch.stack([feats[s][c] for c in cols], 1)) for s in ("val", "test")}
        out[model] = tuple(roc_auc(logits[s][:, 1] - logits[s][:, 0], bundle.splits[s].y) for s in ("val", "test"))
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m python.data.mpower``: load (simulating if needed), print the log and the shortcut check."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", help="folder holding mpower/ (the Synapse export); omit for the simulated cohort")
    ap.add_argument("--cohort", default="default", choices=list(COHORTS), help="simulated cohort size")
    ap.add_argument("--cache-dir", default="data_cache/mpower_sim", help="where simulated cohorts are cached")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the test / val subject draw")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the bundle's log lines and the generation time
    started = time.perf_counter()
    bundle = load_mpower(args.data_root, cache_dir=args.cache_dir, cohort=args.cohort, split_seed=args.split_seed)
    print(f"{bundle.description} [{bundle.data_source}] ready in {time.perf_counter() - started:.1f} s")
    print(f"\n{'model':62s} {'val AUC':>8s} {'test AUC':>8s}")
    for model, (val, test) in shortcut_check(bundle).items():
        print(f"{model:62s} {val:8.3f} {test:8.3f}")


if __name__ == "__main__":
    main()
