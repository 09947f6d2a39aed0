"""Subject-wise splits of mPower records: an age-balanced test set, the other subjects to train / val."""

from __future__ import annotations

import numpy as np
import torch

from ..base import Split
from .reader import AGE_BIN_NAMES, TEST_AGE_BINS, _Records, age_bin


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
