"""Triton inverse symmetric cross-entropy ``S = 1/2 (P log Qᵀ + log P Qᵀ)``: kernels, launchers, autograd.

One tiled GEMM over ``[P | log P]`` and ``[log Q | Q]`` whose logs (``log(max(x, finfo(float32).tiny))``,
as reference.safe_log) are taken on the tiles in registers: no log matrix is written. Backward:
``dP = 1/2 (G log Q + (G Q) / P)`` and ``dQ = 1/2 (Gᵀ log P + (Gᵀ P) / Q)`` (``1/x`` only where
``x >= tiny``, the clamp's gradient), one kernel for both with the roles swapped and G read transposed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import dot_precision, safe_log
from csad_kernels.triton.launch_settings import sce_tiles

OP = "csad_triton::symmetric_cross_entropy"
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
        p = tl.load(p_ptr + b * spb + rn[:, None] * spn + rk[None, :] * spk,
                    mask=(rn < N)[:, None] & (rk < K)[None, :], other=0.0)  # fmt: skip
        q = tl.load(q_ptr + b * sqb + rm[:, None] * sqm + rk[None, :] * sqk,
                    mask=(rm < M)[:, None] & (rk < K)[None, :], other=0.0)  # fmt: skip
        # padded entries are 0 on one side, so they add 0 * log(tiny) = 0
        acc = tl.dot(p, tl.trans(safe_log(q)), acc, input_precision=PRECISION)
        acc = tl.dot(safe_log(p), tl.trans(q), acc, input_precision=PRECISION)
    mask = (rn < N)[:, None] & (rm < M)[None, :]
    tl.store(out_ptr + b * sob + rn[:, None] * son + rm[None, :] * som, 0.5 * acc, mask=mask)


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
        g = tl.load(g_ptr + b * sgb + rn[:, None] * sgn + rm[None, :] * sgm,
                    mask=(rn < N)[:, None] & (rm < M)[None, :], other=0.0)  # fmt: skip
        y = tl.load(y_ptr + b * syb + rm[:, None] * sym + rk[None, :] * syk,
                    mask=(rm < M)[:, None] & (rk < K)[None, :], other=0.0)  # fmt: skip
        acc_log = tl.dot(g, safe_log(y), acc_log, input_precision=PRECISION)
        acc_lin = tl.dot(g, y, acc_lin, input_precision=PRECISION)
    mask = (rn < N)[:, None] & (rk < K)[None, :]
    x = tl.load(x_ptr + b * sxb + rn[:, None] * sxn + rk[None, :] * sxk, mask=mask, other=1.0)
    inv = tl.where(x >= TINY, 1.0 / tl.where(x >= TINY, x, 1.0), 0.0)
    tl.store(dx_ptr + b * sdb + rn[:, None] * sdn + rk[None, :] * sdk, 0.5 * (acc_log + acc_lin * inv), mask=mask)


def sce_forward(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    bsz, n, k = p.shape
    m = q.shape[1]
    out = torch.empty((bsz, n, m), dtype=torch.float32, device=p.device)
    block_n, block_k = sce_tiles(max(n, m), k)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_n), bsz)
    _sce_forward_kernel[grid](
        p, q, out, n, m, k, *p.stride(), *q.stride(), *out.stride(),
        BLOCK_N=block_n, BLOCK_M=block_n, BLOCK_K=block_k, PRECISION=dot_precision(),
    )  # fmt: skip
    return out


def sce_backward_rows(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, transpose_g: bool) -> torch.Tensor:
    bsz, n, k = x.shape
    m = y.shape[1]
    dx = torch.empty((bsz, n, k), dtype=torch.float32, device=x.device)
    sgb, sgn, sgm = g.stride()
    if transpose_g:
        sgn, sgm = sgm, sgn
    block_n, block_k = sce_tiles(max(n, m), k)
    block_k = block_n
    grid = (triton.cdiv(n, block_n), triton.cdiv(k, block_k), bsz)
    _sce_backward_kernel[grid](
        x, y, g, dx, n, m, k, *x.stride(), *y.stride(), sgb, sgn, sgm, *dx.stride(),
        BLOCK_N=block_n, BLOCK_M=block_n, BLOCK_K=block_k, PRECISION=dot_precision(),
    )  # fmt: skip
    return dx


@torch.library.custom_op(OP, mutates_args=())
def symmetric_cross_entropy_op(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    n, k = p.shape[-2:]
    m = q.shape[-2]
    out = sce_forward(p.reshape(-1, n, k).float(), q.reshape(-1, m, k).float())
    return out.reshape(*p.shape[:-2], n, m).to(p.dtype)


@symmetric_cross_entropy_op.register_fake
def _(p, q):
    return p.new_empty((*p.shape[:-1], q.shape[-2]))


@torch.library.custom_op(OP + "_backward", mutates_args=())
def symmetric_cross_entropy_backward_op(
    grad: torch.Tensor, p: torch.Tensor, q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n, k = p.shape[-2:]
    m = q.shape[-2]
    pb, qb = p.reshape(-1, n, k).float(), q.reshape(-1, m, k).float()
    g = grad.reshape(-1, n, m).float()
    dp = sce_backward_rows(pb, qb, g, transpose_g=False)
    dq = sce_backward_rows(qb, pb, g, transpose_g=True)
    return dp.reshape(p.shape).to(p.dtype), dq.reshape(q.shape).to(q.dtype)


@symmetric_cross_entropy_backward_op.register_fake
def _(grad, p, q):
    return torch.empty_like(p), torch.empty_like(q)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    p, q = ctx.saved_tensors
    return symmetric_cross_entropy_backward_op(grad, p, q)


symmetric_cross_entropy_op.register_autograd(_backward, setup_context=_setup_context)


def symmetric_cross_entropy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Triton inverse symmetric cross-entropy, ``(..., N, K), (..., M, K) -> (..., N, M)``."""
    return symmetric_cross_entropy_op(p, q)
