"""Triton batched cosine similarity ``(..., N, d), (..., M, d) -> (..., N, M)``: kernels, launchers, autograd.

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
    dot_precision,
    normalize_rows,
    normalize_rows_backward,
)
from csad_kernels.triton.launch_settings import cosine_tiles

OP = "csad_triton::cosine_similarity"


@triton.jit
def _load_rows(ptr, b, rows, D, s_b, s_n, s_d, BLOCK_D: tl.constexpr, n_rows):
    rd = tl.arange(0, BLOCK_D)
    mask = (rows < n_rows)[:, None] & (rd < D)[None, :]
    return tl.load(ptr + b * s_b + rows[:, None] * s_n + rd[None, :] * s_d, mask=mask, other=0.0)


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
    mask = (rn < N)[:, None] & (rm < M)[None, :]
    tl.store(out_ptr + b * sob + rn[:, None] * son + rm[None, :] * som, out, mask=mask)


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
        gmask = (rn < N)[:, None] & (rm < M)[None, :]
        g = tl.load(g_ptr + b * sgb + rn[:, None] * sgn + rm[None, :] * sgm, mask=gmask, other=0.0)
        acc = tl.dot(g, yn, acc, input_precision=PRECISION)
    xn, den = normalize_rows(_load_rows(x_ptr, b, rn, D, sxb, sxn, sxd, BLOCK_D, N), EPS)
    dx = normalize_rows_backward(xn, den, acc, EPS)
    rd = tl.arange(0, BLOCK_D)
    mask = (rn < N)[:, None] & (rd < D)[None, :]
    tl.store(dx_ptr + b * sdb + rn[:, None] * sdn + rd[None, :] * sdd, dx, mask=mask)


def cosine_forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Launcher on float32 ``(B, N, d)``, ``(B, M, d)`` -> ``(B, N, M)`` float32."""
    bsz, n, d = x.shape
    m = y.shape[1]
    out = torch.empty((bsz, n, m), dtype=torch.float32, device=x.device)
    block_n, block_d = cosine_tiles(max(n, m), d)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_n), bsz)
    _cosine_forward_kernel[grid](
        x, y, out, n, m, d, *x.stride(), *y.stride(), *out.stride(),
        BLOCK_N=block_n, BLOCK_M=block_n, BLOCK_D=block_d, EPS=NORM_EPS, PRECISION=dot_precision(),
    )  # fmt: skip
    return out


def cosine_backward_rows(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, transpose_g: bool) -> torch.Tensor:
    """``d/dx`` of ``sum(G * cos(x, y))`` (``G`` is ``(B, N, M)``, or ``(B, M, N)`` read transposed)."""
    bsz, n, d = x.shape
    m = y.shape[1]
    dx = torch.empty((bsz, n, d), dtype=torch.float32, device=x.device)
    sgb, sgn, sgm = g.stride()
    if transpose_g:
        sgn, sgm = sgm, sgn
    block_n, block_d = cosine_tiles(max(n, m), d)
    grid = (triton.cdiv(n, block_n), bsz)
    _cosine_backward_kernel[grid](
        x, y, g, dx, n, m, d, *x.stride(), *y.stride(), sgb, sgn, sgm, *dx.stride(),
        BLOCK_N=block_n, BLOCK_M=block_n, BLOCK_D=block_d, EPS=NORM_EPS, PRECISION=dot_precision(),
    )  # fmt: skip
    return dx


@torch.library.custom_op(OP, mutates_args=())
def cosine_similarity_op(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    n, d = x.shape[-2:]
    m = y.shape[-2]
    out = cosine_forward(x.reshape(-1, n, d).float(), y.reshape(-1, m, d).float())
    return out.reshape(*x.shape[:-2], n, m).to(x.dtype)


@cosine_similarity_op.register_fake
def _(x, y):
    return x.new_empty((*x.shape[:-1], y.shape[-2]))


@torch.library.custom_op(OP + "_backward", mutates_args=())
def cosine_similarity_backward_op(
    grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = x.shape[-2:]
    m = y.shape[-2]
    xb, yb = x.reshape(-1, n, d).float(), y.reshape(-1, m, d).float()
    g = grad.reshape(-1, n, m).float()
    dx = cosine_backward_rows(xb, yb, g, transpose_g=False)
    dy = cosine_backward_rows(yb, xb, g, transpose_g=True)
    return dx.reshape(x.shape).to(x.dtype), dy.reshape(y.shape).to(y.dtype)


@cosine_similarity_backward_op.register_fake
def _(grad, x, y):
    return torch.empty_like(x), torch.empty_like(y)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    x, y = ctx.saved_tensors
    return cosine_similarity_backward_op(grad, x, y)


cosine_similarity_op.register_autograd(_backward, setup_context=_setup_context)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Triton cosine similarity, ``(..., N, d), (..., M, d) -> (..., N, M)`` (computed in float32)."""
    return cosine_similarity_op(x, y)
