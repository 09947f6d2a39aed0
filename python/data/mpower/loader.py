"""The public mPower loader: the real export or the cached simulated cohort, read by the same code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...flags import Flag, Setting
from ...models import ModelSpec, tap_features
from ..base import SPLITS, DataBundle, Split, Tally, log_report, loses_rows
from ..spec import DatasetSpec
from .cache import prepare_simulated_cohort
from .reader import _read_records, _Records
from .simulator import COHORTS
from .splits import _make_split, _split_records, _split_summary
from .unconfounded import unconfounded_training_split

TRAIN_DRAWS = ("cohort", "unconfounded")
TRAIN_SUBJECTS_STREAM = 7  # keep_subjects draws from its own stream, apart from a split drawn with the same seed

if TYPE_CHECKING:
    from ...config import TrainConfig

logger = logging.getLogger(__name__)


def _load_root(
    root: Path, source: str, max_taps: int, per_cell: int, val_fraction: float, seed: int, label: str,
    replace_train: Callable[[_Records, np.ndarray], tuple[Split, list[str], str]] | None = None,
    train_subjects: float = 1.0,
    subjects_seed: int = 0,
) -> DataBundle:
    """The one reading path for real and simulated data: ``root`` is the ``mpower`` folder.
    ``replace_train(records, train_index) -> (split, its subjects' codes per record, log line)``: a training split
    to use instead of the cohort's (None: the cohort's). ``train_subjects``: the share of the training split's
    subjects kept, drawn with ``subjects_seed`` (:func:`keep_subjects`)."""
    tally = Tally()
    rec, n_rows = _read_records(root, max_taps, tally)
    index, note = _split_records(rec, per_cell, val_fraction, seed)
    splits = {name: _make_split(rec, idx) for name, idx in index.items()}
    train_codes = [rec.codes[i] for i in index["train"]]
    if replace_train is not None:
        splits["train"], train_codes, replaced = replace_train(rec, index["train"])
    kept = None
    if train_subjects < 1:
        splits["train"], train_codes, kept = keep_subjects(splits["train"], train_codes, train_subjects,
                                                             subjects_seed)
    n_skipped = sum(n for m, n in tally.counts.items() if m.startswith("records skipped"))
    log = [f"{root / 'tapping.csv'}: {n_rows} records, {len(rec.codes)} usable, {n_skipped} skipped"]
    log += tally.lines()
    log.append(note)
    if replace_train is not None:
        log.append(replaced)
    if kept is not None:
        log.append(kept)
    codes = {"train": train_codes} | {n: [rec.codes[i] for i in index[n]] for n in ("val", "test")}
    log += [_split_summary(n, splits[n], codes[n]) for n in SPLITS]
    log_report(log, logger, warn=lambda line: loses_rows(line) or "dropped" in line)
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


def keep_subjects(split: Split, codes: list[str], share: float, seed: int) -> tuple[Split, list[str], str]:
    """The records of a random ``share`` of ``split``'s subjects (``codes``: each record's subject; at least one
    subject kept), drawn with ``seed``: the split, its records' codes and a log line saying what was dropped."""
    subjects = sorted(set(codes))
    n_keep = max(1, round(share * len(subjects)))
    chosen = set(np.random.default_rng([seed, TRAIN_SUBJECTS_STREAM]).choice(subjects, n_keep, replace=False).tolist())
    rows = np.flatnonzero([c in chosen for c in codes])
    index = torch.from_numpy(rows)
    kept = Split(tuple(x[index] for x in split.inputs), split.y[index], split.bias[index])
    note = (f"train subsampled (train_subjects {share:g}): {n_keep} of {len(subjects)} subjects kept, "
            f"{len(rows)} of {len(codes)} records; {len(codes) - len(rows)} records left out on purpose")
    return kept, [codes[i] for i in rows], note


def load_mpower(
    data_root: str | Path | None,
    *,
    cache_dir: str | Path = "data_cache/mpower_sim",
    max_taps: int = 128,
    per_cell: int | None = None,
    val_fraction: float = 0.15,
    split_seed: int = 0,
    cohort: str = "default",
    train_draw: str = "cohort",
    train_subjects: float = 1.0,
    subjects_seed: int = 0,
) -> DataBundle:
    """Loads mPower tapping: the real export under ``data_root/mpower/``, or (``data_root=None``) a simulated cohort.

    Splits are subject-wise. test: ``per_cell`` PD and ``per_cell`` control subjects (one record each, the first
    in tapping.csv) from each age interval 45-49, 50-54, 55-59, 60-64, 65-69, 70+, drawn with ``split_seed``.
    The other subjects, all their records: ``val`` (``val_fraction`` of them), ``train`` (the rest).
    ``per_cell`` None means 30 (real data, default cohort) or the cohort's own (quick: 6).
    ``cohort``: ``"default"`` or ``"quick"`` (simulated only; cached under ``cache_dir/<cohort>``).
    ``train_draw``: ``"cohort"`` (the training split above) or ``"unconfounded"`` (simulated cohorts only): a training
    split of new simulated subjects with the same size and age mix and the same PD share in every age bin
    (:mod:`.unconfounded`, the simulator's age-invariant oracle), cached under
    ``cache_dir/<cohort folder>_unconfounded_train``; val and test stay the cohort's.
    ``train_subjects`` in (0, 1]: keep only a random share of the training split's subjects (after ``train_draw``),
    drawn with ``subjects_seed``, for learning curves: what less data costs. The trainer passes its ``--seed``, so
    the spread over seeds includes which subjects were kept (it moves the score more than the model seed does).

    Returns a DataBundle with inputs ``(taps (n, 6, max_taps) float32, mask (n, max_taps) bool)``, ``y (n,)``
    int64 PD, ``bias (n, 1)`` int64 age bin 0..7.
    """
    if max_taps < 2:
        raise ValueError(f"max_taps must be >= 2, got {max_taps}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if per_cell is not None and per_cell < 1:
        raise ValueError(f"per_cell must be >= 1, got {per_cell}")
    if train_draw not in TRAIN_DRAWS:
        raise ValueError(f"train_draw must be one of {list(TRAIN_DRAWS)}, got {train_draw!r}")
    _check_share(train_subjects)
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
    replace_train = None
    if train_draw == "unconfounded":
        if not simulated:
            raise ValueError(f"train_draw 'unconfounded' needs a simulated cohort (with cohort.json), and {data_root} "
                             "is real data: only a simulator can draw new subjects; use method 'oracle' there")
        draw_dir = Path(cache_dir) / f"{Path(data_root).name}_unconfounded_train"
        label += ", training split drawn unconfounded"

        def replace_train(rec: _Records, train_index: np.ndarray) -> tuple[Split, list[str], str]:
            return unconfounded_training_split(Path(data_root), rec, train_index, draw_dir, max_taps)
    return _load_root(
        root,
        "simulated" if simulated else "real",
        max_taps,
        30 if per_cell is None else per_cell,
        val_fraction,
        split_seed,
        label,
        replace_train,
        train_subjects,
        subjects_seed,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Registration (python/data/registry.py)

MAX_TAPS = 192  # 20 s of tapping; longer records are cut and counted (99% of the simulated ones fit)


def _load(config: TrainConfig) -> DataBundle:
    return load_mpower(config.data_root, cache_dir=Path(config.cache_dir) / "mpower_sim",
                       cohort="quick" if config.quick else "default", max_taps=MAX_TAPS,
                       train_draw=config.train_draw, train_subjects=config.train_subjects,
                       subjects_seed=config.seed)


def _check_share(share: float) -> None:
    if isinstance(share, bool) or not 0 < share <= 1:
        raise ValueError(f"train_subjects must be a share in (0, 1], got {share!r}")


def _check_train_subjects(config: TrainConfig) -> None:
    _check_share(config.train_subjects)


SPEC = DatasetSpec(
    name="mpower",
    data_root="DIR/mpower/tapping.csv, demographics.csv, tapping_samples/ (default: a simulated cohort in that format)",
    summary="mPower finger tapping, a simulated cohort in the Synapse export's format without --data-root",
    load=_load,
    model=ModelSpec(branch=64, target=(64,), bias=(64,), estimator=(64, 64, 32, 32)),
    features=tap_features,
    defaults={"lambda_": 1.0, "pretrain_epochs": 15, "epochs": 15, "bias_epochs": 20, "estimator_epochs": 3},
    quick_train_rows=None,  # --quick loads the small cohort instead
    settings=(Setting("train_draw", str, "cohort", Flag(
        "mPower, simulated cohort only: 'cohort' (default) trains on the cohort's training split; 'unconfounded' on "
        "new simulated subjects of the same size and age mix with the same PD share in every age bin: with "
        "--method baseline, the simulator's age-invariant oracle (a reference ceiling, not a debiasing method; "
        "val and test unchanged)", choices=TRAIN_DRAWS)),
              Setting("train_subjects", float, 1.0, Flag(
                  "mPower: train on a random share in (0, 1] of the training split's subjects (default 1: all; "
                  "after --train-draw; drawn with --seed, so each seed keeps other subjects), for learning curves: "
                  "what less data costs"), check=_check_train_subjects)),
)
