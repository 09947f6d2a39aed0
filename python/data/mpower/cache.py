"""The cache of simulated cohorts: generated once, atomically, under a lock; reused while its manifest matches."""

from __future__ import annotations

import fcntl
import json
import logging
import time
from pathlib import Path

from ...checkpoint import write_dir_atomic
from .simulator import SimulatorParams, _manifest, simulate_cohort

logger = logging.getLogger(__name__)


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
