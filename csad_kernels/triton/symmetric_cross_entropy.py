"""Triton inverse symmetric cross-entropy ``S = 1/2 (P log Qᵀ + log P Qᵀ)``: kernels and launchers (autograd:
:mod:`csad_kernels.triton._pairwise`).

One tiled GEMM over ``[P | log P]`` and ``[log Q | Q]`` whose logs (``log(max(x, finfo(float32).tiny))``,
as reference.safe_log) are taken on the tiles in registers: no log matrix is written. Backward:
``dP = 1/2 (G log Q + (G Q) / P)`` and ``dQ = 1/2 (Gᵀ log P + (Gᵀ P) / Q)`` (``1/x`` only where
``x >= tiny``, the clamp's gradient), one kernel for both with the roles swapped and G read transposed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import load_tile, safe_log, store_tile, tile_mask, tile_ptrs
from csad_kernels.triton._pairwise import launch_pair_forward, launch_row_gradient, register_pair_op
from csad_kernels.triton.launch_settings import sce_tiles

TINY: tl.constexpr = tl.constexpr(1.1754943508222875e-38)


@triton.jit
def _sce_forward_kernel(
    p_ptr, q_ptr, out_ptr, N, M, K, spb, spn, spk, sqb, sqm, sqk, sob, son, som,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pn, pm, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = pm * BLOCK_M + tl.arange(0, BLOCK_M)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        p = load_tile(p_ptr + b * spb, rn, rk, N, K, spn, spk)
        q = load_tile(q_ptr + b * sqb, rm, rk, M, K, sqm, sqk)
        # padded entries are 0 on one side, so they add 0 * log(tiny) = 0
        acc = tl.dot(p, tl.trans(safe_log(q)), acc, input_precision=PRECISION)
        acc = tl.dot(safe_log(p), tl.trans(q), acc, input_precision=PRECISION)
    store_tile(out_ptr + b * sob, 0.5 * acc, rn, rm, N, M, son, som)


@triton.jit
def _sce_backward_kernel(
    x_ptr, y_ptr, g_ptr, dx_ptr, N, M, K,
    sxb, sxn, sxk, syb, sym, syk, sgb, sgn, sgm, sdb, sdn, sdk,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """``dX = 1/2 (G log Y + (G Y) / X)`` for a (row block, K block) of X."""
    pn, pk, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = pk * BLOCK_K + tl.arange(0, BLOCK_K)
    acc_log = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    acc_lin = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        rm = m0 + tl.arange(0, BLOCK_M)
        g = load_tile(g_ptr + b * sgb, rn, rm, N, M, sgn, sgm)
        y = load_tile(y_ptr + b * syb, rm, rk, M, K, sym, syk)
        acc_log = tl.dot(g, safe_log(y), acc_log, input_precision=PRECISION)
        acc_lin = tl.dot(g, y, acc_lin, input_precision=PRECISION)
    x = tl.load(tile_ptrs(x_ptr + b * sxb, rn, rk, sxn, sxk), mask=tile_mask(rn, rk, N, K), other=1.0)
    inv = tl.where(x >= TINY, 1.0 / tl.where(x >= TINY, x, 1.0), 0.0)
    store_tile(dx_ptr + b * sdb, 0.5 * (acc_log + acc_lin * inv), rn, rk, N, K, sdn, sdk)


def sce_forward(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Launcher on float32 ``(B, N, K)``, ``(B, M, K)`` -> ``(B, N, M)`` float32."""
    block_n, block_k = sce_tiles(max(p.shape[1], q.shape[1]), p.shape[2])
    return launch_pair_forward(_sce_forward_kernel, p, q, block_n, BLOCK_K=block_k)


def sce_backward_rows(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, transpose_g: bool) -> torch.Tensor:
    """``d/dx`` of ``sum(G * S(x, y))``, one program per (row block, K block) (K blocks as wide as row blocks)."""
    block_n, _ = sce_tiles(max(x.shape[1], y.shape[1]), x.shape[2])
    k_blocks = triton.cdiv(x.shape[2], block_n)
    return launch_row_gradient(_sce_backward_kernel, x, y, g, transpose_g, block_n, (k_blocks,), BLOCK_K=block_n)


symmetric_cross_entropy_op = register_pair_op("symmetric_cross_entropy", sce_forward, sce_backward_rows)


def symmetric_cross_entropy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Triton inverse symmetric cross-entropy, ``(..., N, K), (..., M, K) -> (..., N, M)``."""
    return symmetric_cross_entropy_op(p, q)
