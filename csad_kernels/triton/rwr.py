"""Triton RWR ``R = rownorm((1-c)(I - cE)^-1)``, ``(..., N, N) -> (..., N, N)``: kernels, launchers, autograd.

The solve is the product form ``(I - A)^-1 = (I + A)(I + A^2)(I + A^4)...`` with ``A = cE`` and k factors,
``c^(2^k)/(1-c) <= 1e-8`` (k = 5 at c = 0.5): ``2(k-1)`` GEMMs in k launches (:func:`product_form`: the first
forms ``W = I + A`` and ``Q = A^2``, each next one both ``W <- W + W Q`` and ``Q <- Q Q`` from the same tiles of Q)
at the backend's dot precision (tf32x3 by default, see :mod:`csad_kernels.triton._common`). Rows are
then renormalised as the reference does (``r = (1-c) W; r / rowsum(r)``). The op also returns the inverse
``W`` (non-differentiable) so the backward reuses it: ``dE = c Wᵀ dW Wᵀ`` (two GEMMs that read ``Wᵀ``
through strides).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import dot_precision, load_tile, num_factors, store_tile
from csad_kernels.triton.launch_settings import COMPILE_OPTIONS, gemm_tiles, row_blocks

OP = "csad_triton::rwr"


@triton.jit
def _gemm_kernel(
    a_ptr, b_ptr, out_ptr, M, P, K, scale,
    sab, sam, sak, sbb, sbk, sbp, sob, som, sop,
    BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """``out[b] = scale * A[b] @ B[b]``, any strides (transposes are free)."""
    pm, pp, bb = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rm = pm * BLOCK_M + tl.arange(0, BLOCK_M)
    rp = pp * BLOCK_P + tl.arange(0, BLOCK_P)
    acc = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = load_tile(a_ptr + bb * sab, rm, rk, M, K, sam, sak)
        acc = tl.dot(a, load_tile(b_ptr + bb * sbb, rk, rp, K, P, sbk, sbp), acc, input_precision=PRECISION)
    store_tile(out_ptr + bb * sob, acc * scale, rm, rp, M, P, som, sop)


def gemm(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Batched fp32 ``scale * a @ b`` for ``(B, M, K) @ (B, K, P)``; inputs may be strided views."""
    bsz, m, k = a.shape
    p = b.shape[2]
    out = torch.empty((bsz, m, p), dtype=torch.float32, device=a.device)
    block_m, block_p, block_k = gemm_tiles(m, p, k)
    grid = (triton.cdiv(m, block_m), triton.cdiv(p, block_p), bsz)
    _gemm_kernel[grid](
        a, b, out, m, p, k, scale,
        *a.stride(), *b.stride(), *out.stride(),
        BLOCK_M=block_m, BLOCK_P=block_p, BLOCK_K=block_k, PRECISION=dot_precision(), **COMPILE_OPTIONS,
    )  # fmt: skip
    return out


@triton.jit
def _product_step_kernel(
    w_ptr, q_ptr, w_out_ptr, q_out_ptr, N, c,
    swb, swn, swm, sqb, sqn, sqm, sob, son, som,
    FIRST: tl.constexpr, WITH_Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One factor of the product form on one (BLOCK_M, BLOCK_P) tile, both products on the same tiles of ``Q``.

    FIRST (``q_ptr`` holds E, ``w_ptr`` is unused): ``W = I + A`` and ``Q = A A`` with ``A = cE``. Otherwise:
    ``W' = W + W Q`` and, with WITH_Q, ``Q' = Q Q`` (``Q = A^(2^k)``, the next factor's power). Outputs are
    contiguous ``(B, N, N)`` with strides ``sob, son, som``."""
    pm, pp, bb = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rm = pm * BLOCK_M + tl.arange(0, BLOCK_M)
    rp = pp * BLOCK_P + tl.arange(0, BLOCK_P)
    acc_w = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
    acc_q = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
    scale = c if FIRST else 1.0
    for k0 in range(0, N, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        mask_left = (rm < N)[:, None] & (rk < N)[None, :]
        q_right = scale * tl.load(q_ptr + bb * sqb + rk[:, None] * sqn + rp[None, :] * sqm,
                                  mask=(rk < N)[:, None] & (rp < N)[None, :], other=0.0)  # fmt: skip
        if WITH_Q:
            q_left = tl.load(q_ptr + bb * sqb + rm[:, None] * sqn + rk[None, :] * sqm, mask=mask_left, other=0.0)
            q_left = scale * q_left
            acc_q = tl.dot(q_left, q_right, acc_q, input_precision=PRECISION)
        if not FIRST:
            w_left = tl.load(w_ptr + bb * swb + rm[:, None] * swn + rk[None, :] * swm, mask=mask_left, other=0.0)
            acc_w = tl.dot(w_left, q_right, acc_w, input_precision=PRECISION)
    mask = (rm < N)[:, None] & (rp < N)[None, :]
    if FIRST:
        e = tl.load(q_ptr + bb * sqb + rm[:, None] * sqn + rp[None, :] * sqm, mask=mask, other=0.0)
        w_new = c * e + tl.where(rm[:, None] == rp[None, :], 1.0, 0.0)
    else:
        w_new = acc_w + tl.load(w_ptr + bb * swb + rm[:, None] * swn + rp[None, :] * swm, mask=mask, other=0.0)
    out = bb * sob + rm[:, None] * son + rp[None, :] * som
    tl.store(w_out_ptr + out, w_new, mask=mask)
    if WITH_Q:
        tl.store(q_out_ptr + out, acc_q, mask=mask)


def product_form(e: torch.Tensor, c: float) -> torch.Tensor:
    """``W = (I - cE)^-1 = (I + A)(I + A^2)...(I + A^(2^(k-1)))``, ``A = cE``, of float32 ``(B, N, N)`` ``e``.

    k launches: the first forms ``W = I + A`` and ``Q = A^2``; each next one ``W <- W + W Q`` and ``Q <- Q Q``
    from the same tiles of Q (the last one without Q)."""
    bsz, n, _ = e.shape
    factors = num_factors(c)
    block_m, block_p, block_k = gemm_tiles(n, n, n)
    grid = (triton.cdiv(n, block_m), triton.cdiv(n, block_p), bsz)
    w, q = e, e
    for step in range(factors):
        w_out = torch.empty((bsz, n, n), dtype=torch.float32, device=e.device)
        with_q = step < factors - 1
        q_out = torch.empty_like(w_out) if with_q else w_out
        _product_step_kernel[grid](
            w, q, w_out, q_out, n, c, *w.stride(), *q.stride(), *w_out.stride(),
            FIRST=step == 0, WITH_Q=with_q, BLOCK_M=block_m, BLOCK_P=block_p, BLOCK_K=block_k,
            PRECISION=dot_precision(), **COMPILE_OPTIONS,
        )  # fmt: skip
        w, q = w_out, q_out
    return w


@triton.jit
def _rownorm_kernel(
    w_ptr, r_ptr, N, scale, swb, swn, swm, srb, srn, srm, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr
):  # fmt: skip
    """``R = scale * W / rowsum(scale * W)`` for a block of rows."""
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    w_ptr += b * swb
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    total = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        total += tl.sum(scale * load_tile(w_ptr, rows, cols, N, N, swn, swm), axis=1)
    total = tl.where(rows < N, total, 1.0)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        r = scale * load_tile(w_ptr, rows, cols, N, N, swn, swm) / total[:, None]
        store_tile(r_ptr + b * srb, r, rows, cols, N, N, srn, srm)


@triton.jit
def _rownorm_backward_kernel(
    w_ptr, r_ptr, g_ptr, dw_ptr, N, scale,
    swb, swn, swm, srb, srn, srm, sgb, sgn, sgm, sdb, sdn, sdm,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``dW = scale * (dR - rowsum(dR * R)) / rowsum(scale * W)``."""
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    g_ptr += b * sgb
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    total = tl.zeros((BLOCK_R,), dtype=tl.float32)
    dot = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        total += tl.sum(scale * load_tile(w_ptr + b * swb, rows, cols, N, N, swn, swm), axis=1)
        r = load_tile(r_ptr + b * srb, rows, cols, N, N, srn, srm)
        dot += tl.sum(load_tile(g_ptr, rows, cols, N, N, sgn, sgm) * r, axis=1)
    total = tl.where(rows < N, total, 1.0)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        dw = scale * (load_tile(g_ptr, rows, cols, N, N, sgn, sgm) - dot[:, None]) / total[:, None]
        store_tile(dw_ptr + b * sdb, dw, rows, cols, N, N, sdn, sdm)


def rwr_forward(e: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, W)`` of float32 ``(B, N, N)`` row-stochastic ``e``."""
    bsz, n, _ = e.shape
    w = product_form(e, c)
    r = torch.empty_like(w)
    block_r, block_c = row_blocks(n)
    _rownorm_kernel[(triton.cdiv(n, block_r), bsz)](
        w, r, n, 1.0 - c, *w.stride(), *r.stride(), BLOCK_R=block_r, BLOCK_C=block_c, **COMPILE_OPTIONS,
    )
    return r, w


def rwr_backward(grad: torch.Tensor, r: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """``dE = c Wᵀ dW Wᵀ`` with ``dW`` the gradient through the row renormalisation."""
    bsz, n, _ = w.shape
    dw = torch.empty_like(w)
    block_r, block_c = row_blocks(n)
    _rownorm_backward_kernel[(triton.cdiv(n, block_r), bsz)](
        w, r, grad, dw, n, 1.0 - c, *w.stride(), *r.stride(), *grad.stride(), *dw.stride(),
        BLOCK_R=block_r, BLOCK_C=block_c, **COMPILE_OPTIONS,
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
    ctx.set_materialize_grads(False)  # no zero tensor (a kernel) for the non-differentiable output's grad
    ctx.save_for_backward(r, w)
    ctx.c = inputs[1]


def _backward(ctx, grad_r, grad_w):
    r, w = ctx.saved_tensors
    return rwr_backward_op(grad_r, r, w, ctx.c), None


rwr_op.register_autograd(_backward, setup_context=_setup_context)


def rwr(e: torch.Tensor, c: float = 0.5) -> torch.Tensor:
    """Triton RWR, ``(..., N, N) -> (..., N, N)`` (computed in float32)."""
    return rwr_op(e, float(c))[0]
