"""Dataset loaders. ``load_dataset(config)`` picks the real data under ``--data-root`` or the embedded default."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import TrainConfig
from .base import SPLITS, DataBundle, Split

MPOWER_MAX_TAPS = 192  # 20 s of tapping; longer records are cut and counted (99% of the simulated ones fit)
# --quick trains on at most this many random rows of the train split (val and test stay whole); mPower has a
# small cohort of its own instead
QUICK_TRAIN_ROWS = {"adult": 4096, "colored_mnist": 1024, "celeba": 1024, "imdb": 1024, "csv": 4096}


def shrink_train(bundle: DataBundle, rows: int, seed: int) -> None:
    """Keep a random ``rows`` of the train split (for --quick), saying so in the bundle's log."""
    train = bundle.splits["train"]
    if len(train) <= rows:
        return
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:rows]
    bundle.splits["train"] = train.subset(keep.sort().values)
    bundle.log.append(f"--quick: training on {rows} random rows of the {len(train)} of the train split")


def load_dataset(config: TrainConfig) -> DataBundle:
    bundle = _load(config)
    if config.quick and config.dataset in QUICK_TRAIN_ROWS:
        shrink_train(bundle, QUICK_TRAIN_ROWS[config.dataset], config.seed)
    return bundle


def _load(config: TrainConfig) -> DataBundle:
    if config.dataset == "mpower":
        from .mpower import load_mpower

        return load_mpower(config.data_root, cache_dir=Path(config.cache_dir) / "mpower_sim",
                           cohort="quick" if config.quick else "default", max_taps=MPOWER_MAX_TAPS)
    if config.dataset == "adult":
        from ..adult_metrics import adult_metrics
        from .adult import load_adult

        bundle = load_adult(config.data_root, split=config.split, bias=config.bias, download=config.download)
        bundle.extra_metrics = lambda predict, split: adult_metrics(lambda x: predict((x,)), split.inputs[0], split.y)
        return bundle
    if config.dataset == "colored_mnist":
        from .colored_mnist import load_colored_mnist

        return load_colored_mnist(config.data_root, sigma2=config.sigma2, seed=config.seed)
    if config.dataset == "celeba":
        from .celeba import load_celeba

        return load_celeba(config.data_root, target=config.target or "Blond_Hair", image_size=config.image_size,
                           max_images=config.max_images, seed=config.split)
    if config.dataset == "imdb":
        from .imdb import load_imdb

        return load_imdb(config.data_root, train_on=config.train_on, image_size=config.image_size,
                         clean_ids=config.clean_ids, max_images=config.max_images, seed=config.split)
    if config.dataset == "csv":
        from .csv_table import load_csv_table

        return load_csv_table(config.csv, target=config.target, bias=config.bias, bias_bins=config.bias_bins,
                              seed=config.split)
    raise ValueError(f"unknown dataset {config.dataset!r}")


__all__ = ["SPLITS", "DataBundle", "Split", "load_dataset"]
