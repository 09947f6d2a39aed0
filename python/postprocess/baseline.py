"""The vanilla baseline trained for its encoder F when neither a features file nor a run is given."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# the train CLI's data flags that the trained baseline takes from this CLI: (flag, dest, type; None for a switch)
DATA_FLAGS = (("--data-root", "data_root", str), ("--download", "download", None), ("--cache-dir", "cache_dir", str),
              ("--split", "split", int), ("--bias", "bias", str), ("--sigma2", "sigma2", float),
              ("--csv", "csv", str), ("--target", "target", str), ("--bias-bins", "bias_bins", int))


def data_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`DATA_FLAGS` given on this command line, as config settings (field name -> value)."""
    return {dest: getattr(args, dest) for _, dest, _ in DATA_FLAGS if getattr(args, dest) not in (None, False)}


def train_baseline(dataset: str, out: Path, quick: bool, seed: int, data: dict[str, Any] | None = None) -> Path:
    """Train the dataset's vanilla baseline into ``out/encoder`` (reused when it is already complete); ``data``:
    the data settings of its config (``{"data_root": DIR}`` ...)."""
    from .. import train

    run = out / "encoder"
    if (run / "metrics.json").is_file():
        return run
    given = {"dataset": dataset, "method": "baseline", "baseline": False, "out": str(run), "seed": seed,
             **(data or {}), **({"quick": True} if quick else {})}
    train.run_training(train.config_for(given), train.RunOptions(overwrite=True, progress=False))
    return run
