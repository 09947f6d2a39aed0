"""Triton RWR ``R = rownorm((1-c)(I - cE)^-1)``, ``(..., N, N) -> (..., N, N)``: kernels, launchers, autograd.

The solve is the product form ``(I - A)^-1 = (I + A)(I + A^2)(I + A^4)...`` with ``A = cE`` and k factors,
``c^(2^k)/(1-c) <= 1e-8`` (k = 5 at c = 0.5): ``2(k-1)`` tiled batched GEMMs (``P <- P P``, ``W <- W + W
P``) at the backend's dot precision (tf32x3 by default, see :mod:`csad_kernels.triton._common`). Rows are
then renormalised as the reference does (``r = (1-c) W; r / rowsum(r)``). The op also returns the inverse
``W`` (non-differentiable) so the backward reuses it: ``dE = c Wᵀ dW Wᵀ`` (two GEMMs that read ``Wᵀ``
through strides).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import dot_precision, num_factors
from csad_kernels.triton.launch_settings import gemm_tiles, row_blocks

OP = "csad_triton::rwr"


@triton.jit
def _gemm_kernel(
    a_ptr, b_ptr, c0_ptr, out_ptr, M, P, K, scale,
    sab, sam, sak, sbb, sbk, sbp, scb, scm, scp, sob, som, sop,
    HAS_C0: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """``out[b] = scale * A[b] @ B[b] (+ C0[b])``, any strides (transposes are free)."""
    pm, pp, bb = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rm = pm * BLOCK_M + tl.arange(0, BLOCK_M)
    rp = pp * BLOCK_P + tl.arange(0, BLOCK_P)
    acc = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            a_ptr + bb * sab + rm[:, None] * sam + rk[None, :] * sak,
            mask=(rm < M)[:, None] & (rk < K)[None, :],
            other=0.0,
        )
        b = tl.load(
            b_ptr + bb * sbb + rk[:, None] * sbk + rp[None, :] * sbp,
            mask=(rk < K)[:, None] & (rp < P)[None, :],
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    acc = acc * scale
    mask = (rm < M)[:, None] & (rp < P)[None, :]
    if HAS_C0:
        acc += tl.load(c0_ptr + bb * scb + rm[:, None] * scm + rp[None, :] * scp, mask=mask, other=0.0)
    tl.store(out_ptr + bb * sob + rm[:, None] * som + rp[None, :] * sop, acc, mask=mask)


def gemm(a: torch.Tensor, b: torch.Tensor, c0: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
    """Batched fp32 ``scale * a @ b (+ c0)`` for ``(B, M, K) @ (B, K, P)``; inputs may be strided views."""
    bsz, m, k = a.shape
    p = b.shape[2]
    out = torch.empty((bsz, m, p), dtype=torch.float32, device=a.device)
    block_m, block_p, block_k = gemm_tiles(m, p, k)
    c0_t = c0 if c0 is not None else out
    grid = (triton.cdiv(m, block_m), triton.cdiv(p, block_p), bsz)
    _gemm_kernel[grid](
        a, b, c0_t, out, m, p, k, scale,
        *a.stride(), *b.stride(), *c0_t.stride(), *out.stride(),
        HAS_C0=c0 is not None, BLOCK_M=block_m, BLOCK_P=block_p, BLOCK_K=block_k, PRECISION=dot_precision(),
    )  # fmt: skip
    return out


@triton.jit
def _rownorm_kernel(
    w_ptr, r_ptr, N, scale, swb, swn, swm, srb, srn, srm, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr
):  # fmt: skip
    """``R = scale * W / rowsum(scale * W)`` for a block of rows."""
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    total = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        w = tl.load(w_ptr + b * swb + rows[:, None] * swn + cols[None, :] * swm, mask=mask, other=0.0)
        total += tl.sum(scale * w, axis=1)
    total = tl.where(rows < N, total, 1.0)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        w = tl.load(w_ptr + b * swb + rows[:, None] * swn + cols[None, :] * swm, mask=mask, other=0.0)
        tl.store(r_ptr + b * srb + rows[:, None] * srn + cols[None, :] * srm, scale * w / total[:, None], mask=mask)


@triton.jit
def _rownorm_backward_kernel(
    w_ptr, r_ptr, g_ptr, dw_ptr, N, scale,
    swb, swn, swm, srb, srn, srm, sgb, sgn, sgm, sdb, sdn, sdm,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``dW = scale * (dR - rowsum(dR * R)) / rowsum(scale * W)``."""
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    total = tl.zeros((BLOCK_R,), dtype=tl.float32)
    dot = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        w = tl.load(w_ptr + b * swb + rows[:, None] * swn + cols[None, :] * swm, mask=mask, other=0.0)
        r = tl.load(r_ptr + b * srb + rows[:, None] * srn + cols[None, :] * srm, mask=mask, other=0.0)
        g = tl.load(g_ptr + b * sgb + rows[:, None] * sgn + cols[None, :] * sgm, mask=mask, other=0.0)
        total += tl.sum(scale * w, axis=1)
        dot += tl.sum(g * r, axis=1)
    total = tl.where(rows < N, total, 1.0)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        g = tl.load(g_ptr + b * sgb + rows[:, None] * sgn + cols[None, :] * sgm, mask=mask, other=0.0)
        dw = scale * (g - dot[:, None]) / total[:, None]
        tl.store(dw_ptr + b * sdb + rows[:, None] * sdn + cols[None, :] * sdm, dw, mask=mask)


def rwr_forward(e: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, W)`` of float32 ``(B, N, N)`` row-stochastic ``e``."""
    bsz, n, _ = e.shape
    a = c * e
    w = a.clone()
    w.diagonal(dim1=-2, dim2=-1).add_(1.0)
    p = a
    for _ in range(num_factors(c) - 1):
        p = gemm(p, p)
        w = gemm(w, p, c0=w)
    r = torch.empty_like(w)
    block_r, block_c = row_blocks(n)
    _rownorm_kernel[(triton.cdiv(n, block_r), bsz)](
        w, r, n, 1.0 - c, *w.stride(), *r.stride(), BLOCK_R=block_r, BLOCK_C=block_c
    )
    return r, w


def rwr_backward(grad: torch.Tensor, r: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """``dE = c Wᵀ dW Wᵀ`` with ``dW`` the gradient through the row renormalisation."""
    bsz, n, _ = w.shape
    dw = torch.empty_like(w)
    block_r, block_c = row_blocks(n)
    _rownorm_backward_kernel[(triton.cdiv(n, block_r), bsz)](
        w, r, grad, dw, n, 1.0 - c, *w.stride(), *r.stride(), *grad.stride(), *dw.stride(),
        BLOCK_R=block_r, BLOCK_C=block_c,
    )  # fmt: skip
    wt = w.mT
    return gemm(gemm(wt, dw), wt, scale=c)


@torch.library.custom_op(OP, mutates_args=())
def rwr_op(e: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, W)``: R in the input dtype, the float32 inverse ``W = (I - cE)^-1`` for the backward."""
    n = e.shape[-1]
    r, w = rwr_forward(e.reshape(-1, n, n).float(), c)
    return r.reshape(e.shape).to(e.dtype), w.reshape(e.shape)


@rwr_op.register_fake
def _(e, c):
    return torch.empty_like(e), e.new_empty(e.shape, dtype=torch.float32)


@torch.library.custom_op(OP + "_backward", mutates_args=())
def rwr_backward_op(grad: torch.Tensor, r: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    n = w.shape[-1]
    de = rwr_backward(grad.reshape(-1, n, n).float(), r.reshape(-1, n, n).float(), w.reshape(-1, n, n), c)
    return de.reshape(r.shape).to(r.dtype)


@rwr_backward_op.register_fake
def _(grad, r, w, c):
    return torch.empty_like(r)


def _setup_context(ctx, inputs, output) -> None:
    r, w = output
    ctx.mark_non_differentiable(w)
    ctx.save_for_backward(r, w)
    ctx.c = inputs[1]


def _backward(ctx, grad_r, grad_w):
    r, w = ctx.saved_tensors
    return rwr_backward_op(grad_r, r, w, ctx.c), None


rwr_op.register_autograd(_backward, setup_context=_setup_context)


def rwr(e: torch.Tensor, c: float = 0.5) -> torch.Tensor:
    """Triton RWR, ``(..., N, N) -> (..., N, N)`` (computed in float32)."""
    return rwr_op(e, float(c))[0]
