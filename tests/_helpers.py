"""Inputs for the tests: clustered embeddings (few centres + noise), labels, graphs. How a backend is compared
with the reference, and over which backends and dtypes: tests/_compare.py."""

from __future__ import annotations

import torch

import csad_kernels.reference as ref


def clustered(
    batch: tuple[int, ...],
    n: int,
    d: int,
    *,
    centres: int = 3,
    noise: float = 0.15,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``(*batch, n, d)`` around ``centres`` random centres, and each row's centre id.

    On isotropic noise the softmax graphs are nearly flat and orientation mistakes in the RWR hide;
    clustered rows give graphs with structure.
    """
    g = torch.Generator().manual_seed(seed)
    centre_vectors = torch.randn(*batch, centres, d, generator=g, dtype=torch.float64)
    assignment = torch.randint(0, centres, (*batch, n), generator=g)
    rows = torch.gather(centre_vectors, -2, assignment.unsqueeze(-1).expand(*batch, n, d))
    rows = rows + noise * torch.randn(*batch, n, d, generator=g, dtype=torch.float64)
    return rows.to(dtype), assignment


def graph(
    batch: tuple[int, ...], n: int, d: int = 8, *, tau: float = 10.0, seed: int = 0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A row-stochastic adjacency ``softmax(tau * cos)`` of clustered embeddings: ``(*batch, n, n)``."""
    x, _ = clustered(batch, n, d, seed=seed, dtype=dtype)
    return ref.softmax_adjacency(ref.cosine_similarity(x, x), tau)


def probabilities(
    batch: tuple[int, ...], n: int, k: int, *, seed: int = 0, peak: float = 3.0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Probability rows ``softmax(peak * randn)``, ``(*batch, n, k)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(peak * torch.randn(*batch, n, k, generator=g, dtype=torch.float64), dim=-1).to(dtype)


def labels(batch: tuple[int, ...], n: int, classes: int = 3, k: int | None = None, *, seed: int = 0) -> torch.Tensor:
    """Integer bias labels ``(*batch, n)`` or ``(*batch, n, k)`` that use at least two values."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, n) if k is None else (*batch, n, k)
    out = torch.randint(0, classes, shape, generator=g)
    first, second = (out[..., 0], out[..., 1]) if k is None else (out[..., 0, :], out[..., 1, :])
    first.fill_(0)
    second.fill_(classes - 1)
    return out


def brute_force_mask(bias: torch.Tensor, tolerance: int) -> torch.Tensor:
    """Ω of one problem by the definition, with Python loops: ``(n,) | (n, k) -> (n, n)``."""
    rows = bias.reshape(bias.shape[0], -1).tolist()
    n = len(rows)
    out = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            out[i, j] = max(abs(a - b) for a, b in zip(rows[i], rows[j], strict=True)) <= tolerance
    return out
