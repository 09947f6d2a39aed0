"""Simulated mPower cohort written in the real export's schema (tables in docs/mpower.md)."""

from __future__ import annotations

import csv
import json
import math
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .reader import AGE_BIN_EDGES, SCREEN_POINTS, TAPPING_FILE_COLUMN

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
    "default": CohortSpec(n_subjects=1590, seed=20240601, per_cell=30),  # the paper trains on 1,044 subjects
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
