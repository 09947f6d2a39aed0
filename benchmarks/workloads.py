"""What is measured: per public op its inputs, its API call, the reference math that torch.compile compiles, and
its nominal FLOP count; and the grids of sizes (full, the CPU default, smoke).

FLOP counts are *nominal*: one formula per op, written below, the same for every provider. GFLOP/s = nominal
FLOPs / median time, so it compares providers on one yardstick; it is not what each provider executes (the
reference solves the RWR system by LU, the fused kernels by the product form, inductor may fuse or recompute).
Counts are per forward over all B problems; backward is counted as 2x forward (not derived), forward+backward
as 3x. exp, log and division count as one FLOP each; comparisons (max, masks) count as none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

import csad_kernels as ck
from csad_kernels import reference

C = 0.5  # RWR walk probability (DESIGN.md §2 default)
TAU = 10.0  # initial tau_y, tau_b
BIAS_CLASSES = 8  # bias labels drawn from 8 classes (mPower's age bins); tolerance 0
SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
DIMS = (32, 128)
BATCHES = (1, 8)
SIMILARITIES = ("joint", "content")
MODES = ("fwd", "bwd", "fwdbwd")
MODE_FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.0, "fwdbwd": 3.0}
ESTIMATOR = "cs_mutual_information"
# CPU default grid (2 cores): the largest N per batch size, d = 32 only. See README "Sizes run".
CPU_MAX_N = {1: 1024, 8: 512}

Fn = Callable[..., torch.Tensor]


@dataclass(frozen=True, order=True)
class Case:
    """One row of a table: an op, a mode, and a size. ``similarity`` is set for the estimator only."""

    op: str
    similarity: str
    d: int
    b: int
    n: int
    mode: str

    @property
    def workload(self) -> str:
        """The pytest-benchmark group: everything but N (one table per workload, one row per N and provider)."""
        parts = [self.op, self.mode, self.similarity, f"d{self.d}" if OPS[self.op].uses_d else "", f"B{self.b}"]
        return "-".join(p for p in parts if p)

    @property
    def id(self) -> str:
        return f"{self.workload}-N{self.n}"

    @property
    def shape(self) -> tuple[str, str, int, int, int]:
        """Cases with one shape share inputs, providers and compiled graphs; only the mode differs."""
        return self.op, self.similarity, self.d, self.b, self.n

    @property
    def flops(self) -> float:
        return MODE_FLOP_FACTOR[self.mode] * self.b * OPS[self.op].flops(self)


# ---- nominal forward FLOPs of one problem ----------------------------------------------------------------------


def cosine_flops(n: int, m: int, d: int) -> float:
    """GEMM 2·n·m·d + row normalisation 3·(n+m)·d (square, add, divide)."""
    return 2 * n * m * d + 3 * (n + m) * d


def softmax_flops(n: int) -> float:
    """5·n² per n×n graph: scale by tau, subtract the row max, exp, row sum, divide."""
    return 5 * n * n


def rwr_flops(n: int) -> float:
    """Product form (DESIGN.md §2): (I-A)^-1 = (I+A)(I+A²)…(I+A¹⁶), 4 squarings + 4 products = 8 GEMMs of 2·n³,
    + 4·n² (c·E, scale by 1-c, row sum, divide). The reference's LU solve executes (2/3 + 2)·n³ instead."""
    return 16 * n**3 + 4 * n * n


def sce_flops(n: int, m: int, k: int) -> float:
    """One GEMM over [p | log p] and [log q | q]: 2·n·m·2k, + n·m (the ½) + (n+m)·k logs."""
    return 4 * n * m * k + n * m + (n + m) * k


def mi_flops(n: int) -> float:
    """3·n²: per pair one shift, one exp and one add into its side's sum (logs and softplus are O(1))."""
    return 3 * n * n


def estimator_flops(n: int, d: int, similarity: str) -> float:
    """The sum of its parts as the reference calls them: content = cos(u, v); structural = cos(u, u), cos(v, v),
    2 softmax graphs, 2 RWR, symmetric cross-entropy with k = n; + n² per added/scaled score matrix + the MI.
    Joint: 36·n³ + 6·n²·d + 26·n² + 18·n·d."""
    total = mi_flops(n) + n * n  # alpha · scores
    if similarity in ("joint", "content"):
        total += cosine_flops(n, n, d)
    if similarity in ("joint", "structural"):
        total += 2 * (cosine_flops(n, n, d) + softmax_flops(n) + rwr_flops(n)) + sce_flops(n, n, n)
    if similarity == "joint":
        total += n * n  # content + structural
    return total


# ---- inputs ------------------------------------------------------------------------------------------------------


def _rows(case: Case, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(case.b, case.n, case.d, generator=gen, device=device)


def _similarity(case: Case, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    x = _rows(case, gen, device)
    return reference.cosine_similarity(x, x)


def _graph(case: Case, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """A row-stochastic graph as the estimator builds it: softmax_rows(tau · cos(x, x))."""
    return reference.softmax_adjacency(_similarity(case, gen, device), TAU)


def _labels(case: Case, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, BIAS_CLASSES, (case.b, case.n), generator=gen, device=device)


def _scalar(value: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, device=device)


# ---- the ops ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """An op to benchmark. ``inputs`` are positional tensors; floating ones become leaves that require grad."""

    inputs: Callable[[Case, torch.Generator, torch.device], tuple[torch.Tensor, ...]]
    api: Callable[[Case, str], Fn]  # the public function with backend=...
    math: Callable[[Case], Fn]  # the reference math without validation (what torch.compile compiles)
    flops: Callable[[Case], float]
    uses_d: bool = False


def _rwr_math(e: torch.Tensor) -> torch.Tensor:
    return reference.rwr(e, C)


def _mi_math(m: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return reference.cross_sample_mi(m, reference.pair_mask(labels.unsqueeze(-1), 0))


def _estimator_math(similarity: str) -> Fn:
    def run(u, v, labels, alpha, tau_y, tau_b):
        omega = reference.pair_mask(labels.unsqueeze(-1), 0)
        return reference.cs_mutual_information(u, v, omega, alpha, tau_y, tau_b, C, similarity, "cs", "mean")

    return run


_ESTIMATOR_MATH = {s: _estimator_math(s) for s in SIMILARITIES}


def _estimator_api(case: Case, backend: str) -> Fn:
    def run(u, v, labels, alpha, tau_y, tau_b):
        return ck.cs_mutual_information(
            u, v, labels, alpha=alpha, tau_y=tau_y, tau_b=tau_b, c=C, similarity=case.similarity, backend=backend
        )

    return run


OPS: dict[str, Op] = {
    ESTIMATOR: Op(
        inputs=lambda c, g, dev: (
            _rows(c, g, dev),
            _rows(c, g, dev),
            _labels(c, g, dev),
            _scalar(1.0, dev),
            _scalar(TAU, dev),
            _scalar(TAU, dev),
        ),
        api=_estimator_api,
        math=lambda c: _ESTIMATOR_MATH[c.similarity],
        flops=lambda c: estimator_flops(c.n, c.d, c.similarity),
        uses_d=True,
    ),
    "cosine_similarity": Op(
        inputs=lambda c, g, dev: (_rows(c, g, dev), _rows(c, g, dev)),
        api=lambda c, b: lambda x, y: ck.cosine_similarity(x, y, backend=b),
        math=lambda c: reference.cosine_similarity,
        flops=lambda c: cosine_flops(c.n, c.n, c.d),
        uses_d=True,
    ),
    "softmax_adjacency": Op(
        inputs=lambda c, g, dev: (_similarity(c, g, dev), _scalar(TAU, dev)),
        api=lambda c, b: lambda s, tau: ck.softmax_adjacency(s, tau, backend=b),
        math=lambda c: reference.softmax_adjacency,
        flops=lambda c: softmax_flops(c.n),
    ),
    "rwr": Op(
        inputs=lambda c, g, dev: (_graph(c, g, dev),),
        api=lambda c, b: lambda e: ck.rwr(e, C, backend=b),
        math=lambda c: _rwr_math,
        flops=lambda c: rwr_flops(c.n),
    ),
    "symmetric_cross_entropy": Op(
        inputs=lambda c, g, dev: (reference.rwr(_graph(c, g, dev), C), reference.rwr(_graph(c, g, dev), C)),
        api=lambda c, b: lambda p, q: ck.symmetric_cross_entropy(p, q, backend=b),
        math=lambda c: reference.symmetric_cross_entropy,
        flops=lambda c: sce_flops(c.n, c.n, c.n),
    ),
    "cross_sample_mi": Op(
        inputs=lambda c, g, dev: (reference.cosine_similarity(_rows(c, g, dev), _rows(c, g, dev)), _labels(c, g, dev)),
        api=lambda c, b: lambda m, labels: ck.cross_sample_mi(m, labels, backend=b),
        math=lambda c: _mi_math,
        flops=lambda c: mi_flops(c.n),
    ),
}


# ---- grids -------------------------------------------------------------------------------------------------------


def grid(profile: str, ops: Sequence[str] | None = None) -> list[Case]:
    """The cases of a profile, grouped by shape (modes adjacent) and in increasing size.

    ``full``: N ∈ SIZES, d ∈ DIMS (ops on N×N inputs: d = 32), B ∈ BATCHES, joint and content, all modes.
    ``cpu``: the full grid cut to what 2 cores measure in ~20 minutes: N ≤ CPU_MAX_N[B], d = 32.
    ``smoke``: the smallest size of every op, similarity and mode (CI: the harness cannot rot).
    """
    if profile not in ("full", "cpu", "smoke"):
        raise ValueError(f"profile must be full, cpu or smoke, got {profile!r}")
    cases = []
    for op in ops or OPS:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        dims = DIMS if OPS[op].uses_d and profile == "full" else DIMS[:1]
        for similarity in SIMILARITIES if op == ESTIMATOR else ("",):
            for d in dims:
                for b in BATCHES[:1] if profile == "smoke" else BATCHES:
                    for n in SIZES[:1] if profile == "smoke" else SIZES:
                        if profile == "cpu" and n > CPU_MAX_N[b]:
                            continue
                        cases += [Case(op, similarity, d, b, n, mode) for mode in MODES]
    return cases
