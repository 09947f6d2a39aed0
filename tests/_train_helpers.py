"""A tiny in-memory dataset in the shape of mPower's (tap sequences + mask, PD label, 8 age bins)."""

from __future__ import annotations

import torch

from python.data.base import DataBundle, Split

TAPS = 16


def tiny_split(n: int, seed: int) -> Split:
    gen = torch.Generator().manual_seed(seed)
    age = torch.randint(0, 8, (n,), generator=gen)
    y = ((age.float() + 2 * torch.randn(n, generator=gen)) > 4).long()
    taps = torch.randn(n, 6, TAPS, generator=gen)
    taps[:, 0] += 0.3 * age[:, None] + 0.5 * y[:, None]
    mask = torch.rand(n, TAPS, generator=gen) < 0.9
    return Split((taps, mask), y, age[:, None])


def tiny_bundle(n_train: int = 96) -> DataBundle:
    splits = {"train": tiny_split(n_train, 1), "val": tiny_split(40, 2), "test": tiny_split(48, 3)}
    return DataBundle("mpower", "simulated", "tiny test cohort", splits, 2, (8,), ("age",), log=["tiny: 0 dropped"])
