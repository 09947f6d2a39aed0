"""mPower export reader: tapping.csv, demographics.csv and the per-record tap JSON files -> arrays, every skipped
or changed item counted (the format is in the package docstring)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base import Tally

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
