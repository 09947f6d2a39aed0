"""Dataset loaders. ``load_dataset(config)`` picks the real data under ``--data-root`` or the embedded default."""

from __future__ import annotations

from pathlib import Path

from python.config import TrainConfig
from python.data.base import SPLITS, DataBundle, Split

MPOWER_MAX_TAPS = 192  # 20 s of tapping; longer records are cut and counted (99% of the simulated ones fit)


def load_dataset(config: TrainConfig) -> DataBundle:
    if config.dataset == "mpower":
        from python.data.mpower import load_mpower

        return load_mpower(
            config.data_root,
            cache_dir=Path(config.cache_dir) / "mpower_sim",
            cohort="quick" if config.quick else "default",
            max_taps=MPOWER_MAX_TAPS,
        )
    raise ValueError(f"unknown dataset {config.dataset!r}")


__all__ = ["SPLITS", "DataBundle", "Split", "load_dataset"]
