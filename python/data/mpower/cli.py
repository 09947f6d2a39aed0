"""mPower finger tapping (PD vs control, age bias): loader for the Synapse export, and a simulated cohort.

``python -m python.data.mpower``: load (simulating if needed), print the log and the shortcut check.
"""

from __future__ import annotations

import argparse
import logging
import time

from .loader import load_mpower
from .shortcut import shortcut_check
from .simulator import COHORTS


def main(argv: list[str] | None = None) -> None:
    """``python -m python.data.mpower``: load (simulating if needed), print the log and the shortcut check."""
    ap = argparse.ArgumentParser(prog=f"python -m {__package__}", description=__doc__.split("\n")[0])
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
