"""Triton batched cosine similarity ``(..., N, d), (..., M, d) -> (..., N, M)``: kernels and launchers (autograd:
:mod:`csad_kernels.triton._pairwise`).

Forward: one program per (problem, N-block, M-block); rows are normalised in registers (no normalised
copy of x or y is written). Backward: one program per (problem, row block) accumulates ``G @ yn`` over
column blocks and applies the gradient of the row normalisation in-kernel; the same kernel gives dy
with the roles of x and y swapped and G read transposed (through strides, no copy).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import (
    NORM_EPS,
    load_tile,
    normalize_rows,
    normalize_rows_backward,
    store_tile,
)
from csad_kernels.triton._pairwise import launch_pair_forward, launch_row_gradient, register_pair_op
from csad_kernels.triton.launch_settings import cosine_tiles


@triton.jit
def _load_rows(ptr, b, rows, D, s_b, s_n, s_d, BLOCK_D: tl.constexpr, n_rows):
    return load_tile(ptr + b * s_b, rows, tl.arange(0, BLOCK_D), n_rows, D, s_n, s_d)


@triton.jit
def _cosine_forward_kernel(
    x_ptr, y_ptr, out_ptr, N, M, D,
    sxb, sxn, sxd, syb, sym, syd, sob, son, som,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, EPS: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pn, pm, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = pm * BLOCK_M + tl.arange(0, BLOCK_M)
    xn, _ = normalize_rows(_load_rows(x_ptr, b, rn, D, sxb, sxn, sxd, BLOCK_D, N), EPS)
    yn, _ = normalize_rows(_load_rows(y_ptr, b, rm, D, syb, sym, syd, BLOCK_D, M), EPS)
    out = tl.dot(xn, tl.trans(yn), input_precision=PRECISION)
    store_tile(out_ptr + b * sob, out, rn, rm, N, M, son, som)


@triton.jit
def _cosine_backward_kernel(
    x_ptr, y_ptr, g_ptr, dx_ptr, N, M, D,
    sxb, sxn, sxd, syb, sym, syd, sgb, sgn, sgm, sdb, sdn, sdd,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, EPS: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """``dx = normalize_backward(x, G @ normalize(y))`` for one block of x's rows."""
    pn, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for start in range(0, M, BLOCK_M):
        rm = start + tl.arange(0, BLOCK_M)
        yn, _ = normalize_rows(_load_rows(y_ptr, b, rm, D, syb, sym, syd, BLOCK_D, M), EPS)
        acc = tl.dot(load_tile(g_ptr + b * sgb, rn, rm, N, M, sgn, sgm), yn, acc, input_precision=PRECISION)
    xn, den = normalize_rows(_load_rows(x_ptr, b, rn, D, sxb, sxn, sxd, BLOCK_D, N), EPS)
    dx = normalize_rows_backward(xn, den, acc, EPS)
    store_tile(dx_ptr + b * sdb, dx, rn, tl.arange(0, BLOCK_D), N, D, sdn, sdd)


def cosine_forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Launcher on float32 ``(B, N, d)``, ``(B, M, d)`` -> ``(B, N, M)`` float32."""
    block_n, block_d = cosine_tiles(max(x.shape[1], y.shape[1]), x.shape[2])
    return launch_pair_forward(_cosine_forward_kernel, x, y, block_n, BLOCK_D=block_d, EPS=NORM_EPS)


def cosine_backward_rows(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, transpose_g: bool) -> torch.Tensor:
    """``d/dx`` of ``sum(G * cos(x, y))`` (``G`` is ``(B, N, M)``, or ``(B, M, N)`` read transposed)."""
    block_n, block_d = cosine_tiles(max(x.shape[1], y.shape[1]), x.shape[2])
    return launch_row_gradient(_cosine_backward_kernel, x, y, g, transpose_g, block_n, BLOCK_D=block_d, EPS=NORM_EPS)


cosine_similarity_op = register_pair_op("cosine_similarity", cosine_forward, cosine_backward_rows)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Triton cosine similarity, ``(..., N, d), (..., M, d) -> (..., N, M)`` (computed in float32)."""
    return cosine_similarity_op(x, y)
