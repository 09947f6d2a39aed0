"""The simulator's age-invariant oracle: a training split drawn unconfounded from the simulator.

The ``oracle`` method (python/methods/oracle.py) reaches age invariance by reweighting the confounded training
split, which keeps only about half of its records' worth of information on the simulated cohort (effective sample
size 51-55 %, docs/results.md), so its score mixes the shortcut's cost with a data cost. Only a simulator can remove
the confounding without that cost: :func:`unconfounded_training_split` simulates a new set of subjects with the
training split's size and age mix, each age bin holding the training split's overall PD share, and reads them with
the same code as the cohort. The same network trained on it (``--train-draw unconfounded``) is the reference of
what an age-invariant model of this size can reach; validation and test splits stay the cohort's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..base import Split, Tally
from .cache import prepare_simulated_cohort
from .reader import _read_records, _Records, age_bin
from .simulator import SimulatorParams
from .splits import _make_split

UNCONFOUNDED_SEED_OFFSET = 1  # the draw's simulator seed: the cohort's seed + this (new subjects, not the cohort's)


def unconfounded_params(rec: _Records, train_index: np.ndarray, params: SimulatorParams) -> tuple[SimulatorParams, int]:
    """The simulator parameters and subject count of a cohort shaped like the training split of ``rec`` (record
    indices ``train_index``): its subjects per age bin as ``age_bin_weights``, its subject-level PD share in every
    bin as ``pd_share``; everything else (the physiology) as ``params``."""
    first: dict[str, int] = {}
    for i in train_index:
        first.setdefault(rec.codes[i], int(i))
    rows = np.fromiter(first.values(), dtype=np.int64)
    bins = np.array([age_bin(int(a)) for a in rec.age[rows]])
    per_bin = np.bincount(bins, minlength=8).astype(np.float64)
    share = float(rec.pd[rows].mean())
    shaped = dataclasses.replace(params, age_bin_weights=tuple(per_bin / per_bin.sum()), pd_share=(share,) * 8)
    return shaped, len(rows)


def unconfounded_training_split(
    cohort_root: Path, rec: _Records, train_index: np.ndarray, directory: Path, max_taps: int
) -> tuple[Split, list[str], str]:
    """A training split simulated like the cohort's (``cohort_root``, holding cohort.json) with PD independent of age:
    cached under ``directory``. Returns the split, its records' subject codes and a log line describing it."""
    manifest = json.loads((cohort_root / "cohort.json").read_text(encoding="utf-8"))
    params = SimulatorParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["params"].items()})
    shaped, n_subjects = unconfounded_params(rec, train_index, params)
    root = prepare_simulated_cohort(directory, n_subjects, int(manifest["seed"]) + UNCONFOUNDED_SEED_OFFSET, shaped)
    drawn, _ = _read_records(root / "mpower", max_taps, Tally())
    split = _make_split(drawn, np.arange(len(drawn.codes)))
    note = (f"train replaced by an unconfounded draw ({root}): {len(split)} records of {n_subjects} new simulated "
            f"subjects, the cohort training split's age mix, PD share {shaped.pd_share[0]:.3f} in every age bin "
            f"(the cohort's training split: {len(train_index)} records)")
    return split, drawn.codes, note
