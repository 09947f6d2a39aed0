"""Triton row-stochastic adjacency ``E = softmax_rows(tau * S)``: kernels, launchers, autograd.

Forward: one program per (problem, block of rows), an online max/sum pass over column blocks and a
second pass that writes E. Backward: ``dZ = E (dE - rowsum(dE E))``, ``dS = tau dZ`` and per-program
partials of ``dtau = sum(dZ S) = sum(E dE (S - rowmean_E S))`` (summed by the launcher).
(The fused estimator's small-N kernel builds its graphs from the embeddings in registers and never calls
this op; its tiled regime uses ``gram_softmax`` below, which fuses the similarity into the softmax.)
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import (
    NORM_EPS,
    dot_precision,
    load_tile,
    normalize_rows,
    normalize_rows_backward,
    store_tile,
)
from csad_kernels.triton.launch_settings import COMPILE_OPTIONS, gram_launch, row_blocks

OP = "csad_triton::softmax_adjacency"


@triton.jit
def _softmax_forward_kernel(
    s_ptr, tau_ptr, e_ptr, N, ssb, ssn, ssm, seb, sen, sem, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    tau = tl.load(tau_ptr)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    run_max = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        s = load_tile(s_ptr + b * ssb, rows, cols, N, N, ssn, ssm)
        z = tl.where((cols < N)[None, :], tau * s, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=1))  # finite: every block holds a valid column
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(z - new_max[:, None]), axis=1)
        run_max = new_max
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        e = tl.exp(tau * load_tile(s_ptr + b * ssb, rows, cols, N, N, ssn, ssm) - run_max[:, None]) / run_sum[:, None]
        store_tile(e_ptr + b * seb, e, rows, cols, N, N, sen, sem)


@triton.jit
def _softmax_backward_kernel(
    s_ptr, e_ptr, g_ptr, tau_ptr, ds_ptr, dtau_ptr, N,
    ssb, ssn, ssm, seb, sen, sem, sgb, sgn, sgm, sdb, sdn, sdm,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    tau = tl.load(tau_ptr)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    dot = tl.zeros((BLOCK_R,), dtype=tl.float32)
    mean_s = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        e, g, s = _backward_tiles(s_ptr, e_ptr, g_ptr, b, rows, c0 + tl.arange(0, BLOCK_C), N,
                                  ssb, ssn, ssm, seb, sen, sem, sgb, sgn, sgm)  # fmt: skip
        dot += tl.sum(e * g, axis=1)
        mean_s += tl.sum(e * s, axis=1)
    dtau = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        e, g, s = _backward_tiles(s_ptr, e_ptr, g_ptr, b, rows, cols, N,
                                  ssb, ssn, ssm, seb, sen, sem, sgb, sgn, sgm)  # fmt: skip
        dz = e * (g - dot[:, None])
        # sum_j dz_ij = 0, so dtau = sum E g (S - rowmean_E(S)): no cancellation of g against rowsum(E g)
        dtau += tl.sum(e * g * (s - mean_s[:, None]), axis=1)
        store_tile(ds_ptr + b * sdb, tau * dz, rows, cols, N, N, sdn, sdm)
    tl.store(dtau_ptr + b * tl.num_programs(0) + pr, tl.sum(dtau, axis=0))


@triton.jit
def _backward_tiles(s_ptr, e_ptr, g_ptr, b, rows, cols, N, ssb, ssn, ssm, seb, sen, sem, sgb, sgn, sgm):
    """The ``rows x cols`` tiles of E, dL/dE and S of problem ``b``."""
    e = load_tile(e_ptr + b * seb, rows, cols, N, N, sen, sem)
    g = load_tile(g_ptr + b * sgb, rows, cols, N, N, sgn, sgm)
    return e, g, load_tile(s_ptr + b * ssb, rows, cols, N, N, ssn, ssm)


@torch.library.custom_op(OP, mutates_args=())
def softmax_adjacency_op(s: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    n = s.shape[-1]
    sb = s.reshape(-1, n, n).float()
    e = torch.empty(sb.shape, dtype=torch.float32, device=s.device)
    block_r, block_c = row_blocks(n)
    _softmax_forward_kernel[(triton.cdiv(n, block_r), sb.shape[0])](
        sb, tau.reshape(1).float(), e, n, *sb.stride(), *e.stride(), BLOCK_R=block_r, BLOCK_C=block_c,
        **COMPILE_OPTIONS,
    )
    return e.reshape(s.shape).to(s.dtype)


@softmax_adjacency_op.register_fake
def _(s, tau):
    return torch.empty_like(s)


@torch.library.custom_op(OP + "_backward", mutates_args=())
def softmax_adjacency_backward_op(
    grad: torch.Tensor, s: torch.Tensor, e: torch.Tensor, tau: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n = s.shape[-1]
    sb, eb, gb = (t.reshape(-1, n, n).float() for t in (s, e, grad))
    ds = torch.empty(sb.shape, dtype=torch.float32, device=s.device)
    block_r, block_c = row_blocks(n)
    programs = triton.cdiv(n, block_r)
    dtau = torch.empty((sb.shape[0], programs), dtype=torch.float32, device=s.device)
    _softmax_backward_kernel[(programs, sb.shape[0])](
        sb, eb, gb, tau.reshape(1).float(), ds, dtau, n,
        *sb.stride(), *eb.stride(), *gb.stride(), *ds.stride(), BLOCK_R=block_r, BLOCK_C=block_c,
        **COMPILE_OPTIONS,
    )  # fmt: skip
    return ds.reshape(s.shape).to(s.dtype), dtau.sum().to(tau.dtype).reshape(tau.shape)


@softmax_adjacency_backward_op.register_fake
def _(grad, s, e, tau):
    return torch.empty_like(s), torch.empty_like(tau)


def _setup_context(ctx, inputs, output) -> None:
    s, tau = inputs
    ctx.save_for_backward(s, output, tau)


def _backward(ctx, grad):
    s, e, tau = ctx.saved_tensors
    return softmax_adjacency_backward_op(grad, s, e, tau)


softmax_adjacency_op.register_autograd(_backward, setup_context=_setup_context)


def softmax_adjacency(s: torch.Tensor, tau) -> torch.Tensor:
    """Triton ``softmax_rows(tau * s)``, ``(..., N, N) -> (..., N, N)``; ``tau`` a number or 0-d tensor."""
    if not isinstance(tau, torch.Tensor):
        tau = torch.tensor(float(tau), dtype=torch.float32, device=s.device)
    return softmax_adjacency_op(s, tau)


# ---- Fused similarity + softmax for the estimator's tiled regime: E = softmax_rows(tau * xn xnᵀ) from the
# rows x, normalised in registers (xn = x / max(|x|, eps), never written), with the Gram matrix formed tile by
# tile in registers (never written); the backward applies the normalisation's gradient in-kernel too. The forward
# also returns each row's (max, sum) so the backward recomputes E tiles exactly as the forward wrote them,
# and nothing N×N is saved for the backward.

GRAM_OP = "csad_triton::gram_softmax"
EPS: tl.constexpr = tl.constexpr(NORM_EPS)


@triton.jit
def _load_rows(x_ptr, b, rows, N, D, sxb, sxn, sxd, BLOCK_D: tl.constexpr):
    """``(xn, max(|x|, eps))`` of the given rows: normalised in registers.

    (Callers name the unused norm ``_xr_norm`` / ``_xc_norm``, not ``_``: in a loop Triton carries every
    reassigned name, and rows and columns have different block sizes.)"""
    rd = tl.arange(0, BLOCK_D)
    mask = (rows < N)[:, None] & (rd < D)[None, :]
    return normalize_rows(tl.load(x_ptr + b * sxb + rows[:, None] * sxn + rd[None, :] * sxd, mask=mask, other=0.0), EPS)


@triton.jit
def _program_rows(x_ptr, tau_ptr, pr, b, N, D, PER_TAU, sxb, sxn, sxd, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """``(tau, rows, xn of those rows, their norms)`` of row block ``pr`` of problem ``b``.

    (The kernels take their program ids themselves: tests/test_triton_offline.py reads each kernel's own IR for the
    widening of the batch id to int64.)"""
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    xr, xr_den = _load_rows(x_ptr, b, rows, N, D, sxb, sxn, sxd, BLOCK_D)
    return tl.load(tau_ptr + b // PER_TAU), rows, xr, xr_den


@triton.jit
def _gram_softmax_forward_kernel(
    x_ptr, tau_ptr, e_ptr, st_ptr, N, D, PER_TAU, sxb, sxn, sxd, seb, sen, sem,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    tau, rows, xr, _xr_norm = _program_rows(x_ptr, tau_ptr, pr, b, N, D, PER_TAU, sxb, sxn, sxd, BLOCK_R, BLOCK_D)
    run_max = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        xc, _xc_norm = _load_rows(x_ptr, b, cols, N, D, sxb, sxn, sxd, BLOCK_D)
        z = tl.where((cols < N)[None, :], tau * tl.dot(xr, tl.trans(xc), input_precision=PRECISION), float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=1))  # finite: every block holds a valid column
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(z - new_max[:, None]), axis=1)
        run_max = new_max
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        xc, _xc_norm = _load_rows(x_ptr, b, cols, N, D, sxb, sxn, sxd, BLOCK_D)
        z = tau * tl.dot(xr, tl.trans(xc), input_precision=PRECISION)
        e = tl.exp(z - run_max[:, None]) / run_sum[:, None]
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        tl.store(e_ptr + b * seb + rows[:, None] * sen + cols[None, :] * sem, e, mask=mask)
    tl.store(st_ptr + (b * 2) * N + rows, run_max, mask=rows < N)
    tl.store(st_ptr + (b * 2 + 1) * N + rows, run_sum, mask=rows < N)


@triton.jit
def _edge_tile(
    x_ptr, g_ptr, xr, rows, rmax, rsum, tau, b, c0, N, D, sxb, sxn, sxd, sgb, sgn, sgm,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """The tile (rows, c0 : c0 + BLOCK_C) of the Gram matrix, of E (from the rows' softmax max and sum) and of dL/dE."""
    cols = c0 + tl.arange(0, BLOCK_C)
    mask = (rows < N)[:, None] & (cols < N)[None, :]
    xc, _xc_norm = _load_rows(x_ptr, b, cols, N, D, sxb, sxn, sxd, BLOCK_D)
    gram = tl.dot(xr, tl.trans(xc), input_precision=PRECISION)
    e = tl.where(mask, tl.exp(tau * gram - rmax[:, None]) / rsum[:, None], 0.0)
    g = tl.load(g_ptr + b * sgb + rows[:, None] * sgn + cols[None, :] * sgm, mask=mask, other=0.0)
    return gram, e, g


@triton.jit
def _gram_softmax_rows_kernel(
    x_ptr, tau_ptr, st_ptr, g_ptr, rowdot_ptr, dtau_ptr, N, D, PER_TAU, sxb, sxn, sxd, sgb, sgn, sgm,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Per row: ``rowdot_i = Σ_j E_ij dE_ij``; per program: ``Σ dZ_ij (G_ij - Σ_k E_ik G_ik)`` (centred dtau)."""
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    tau, rows, xr, _xr_norm = _program_rows(x_ptr, tau_ptr, pr, b, N, D, PER_TAU, sxb, sxn, sxd, BLOCK_R, BLOCK_D)
    rmax = tl.load(st_ptr + (b * 2) * N + rows, mask=rows < N, other=0.0)
    rsum = tl.load(st_ptr + (b * 2 + 1) * N + rows, mask=rows < N, other=1.0)
    rowdot = tl.zeros((BLOCK_R,), dtype=tl.float32)
    mean_g = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        gram, e, g = _edge_tile(x_ptr, g_ptr, xr, rows, rmax, rsum, tau, b, c0, N, D, sxb, sxn, sxd, sgb, sgn, sgm,
                                BLOCK_C, BLOCK_D, PRECISION)  # fmt: skip
        rowdot += tl.sum(e * g, axis=1)
        mean_g += tl.sum(e * gram, axis=1)
    dtau = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        gram, e, g = _edge_tile(x_ptr, g_ptr, xr, rows, rmax, rsum, tau, b, c0, N, D, sxb, sxn, sxd, sgb, sgn, sgm,
                                BLOCK_C, BLOCK_D, PRECISION)  # fmt: skip
        dtau += tl.sum(e * (g - rowdot[:, None]) * (gram - mean_g[:, None]), axis=1)
    tl.store(rowdot_ptr + b * N + rows, rowdot, mask=rows < N)
    tl.store(dtau_ptr + b * tl.num_programs(0) + pr, tl.sum(dtau, axis=0))


@triton.jit
def _gram_softmax_dx_kernel(
    x_ptr, tau_ptr, st_ptr, g_ptr, rowdot_ptr, dx_ptr, part_ptr, dtau_ptr, N, D, PER_TAU,
    sxb, sxn, sxd, sgb, sgn, sgm, sdb, sdn, sdd,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """``dxn_I = tau Σ_J (dZ_IJ + dZ_JIᵀ) xn_J``, ``dZ = E (dE - rowdot)``; G is symmetric: one GEMM, both tiles.
    Then ``dx`` through the row normalisation. The first program of each tau value's problems also sums their
    dtau partials (written by the rows kernel) in float64 into ``dtau[b // PER_TAU]``."""
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    if (pr == 0) & (b % PER_TAU == 0):
        partials = PER_TAU * tl.num_programs(0)
        total = tl.zeros((), dtype=tl.float64)
        for p0 in range(0, partials, BLOCK_C):
            idx = p0 + tl.arange(0, BLOCK_C)
            part = tl.load(part_ptr + b * tl.num_programs(0) + idx, mask=idx < partials, other=0.0)
            total += tl.sum(part.to(tl.float64), axis=0)
        tl.store(dtau_ptr + b // PER_TAU, total.to(dtau_ptr.dtype.element_ty))
    tau = tl.load(tau_ptr + b // PER_TAU)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    xr, xr_den = _load_rows(x_ptr, b, rows, N, D, sxb, sxn, sxd, BLOCK_D)
    rmax = tl.load(st_ptr + (b * 2) * N + rows, mask=rows < N, other=0.0)
    rsum = tl.load(st_ptr + (b * 2 + 1) * N + rows, mask=rows < N, other=1.0)
    rdot = tl.load(rowdot_ptr + b * N + rows, mask=rows < N, other=0.0)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        xc, _xc_norm = _load_rows(x_ptr, b, cols, N, D, sxb, sxn, sxd, BLOCK_D)
        cmax = tl.load(st_ptr + (b * 2) * N + cols, mask=cols < N, other=0.0)
        csum = tl.load(st_ptr + (b * 2 + 1) * N + cols, mask=cols < N, other=1.0)
        cdot = tl.load(rowdot_ptr + b * N + cols, mask=cols < N, other=0.0)
        z = tau * tl.dot(xr, tl.trans(xc), input_precision=PRECISION)
        e_rc = tl.exp(z - rmax[:, None]) / rsum[:, None]  # E[rows, cols]
        e_cr = tl.exp(z - cmax[None, :]) / csum[None, :]  # E[cols, rows]ᵀ
        g_rc = tl.load(g_ptr + b * sgb + rows[:, None] * sgn + cols[None, :] * sgm, mask=mask, other=0.0)
        g_cr = tl.load(g_ptr + b * sgb + cols[None, :] * sgn + rows[:, None] * sgm, mask=mask, other=0.0)
        dz = tl.where(mask, e_rc * (g_rc - rdot[:, None]) + e_cr * (g_cr - cdot[None, :]), 0.0)
        acc = tl.dot(dz, xc, acc, input_precision=PRECISION)
    rd = tl.arange(0, BLOCK_D)
    mask_d = (rows < N)[:, None] & (rd < D)[None, :]
    dx = normalize_rows_backward(xr, xr_den, tau * acc, EPS)
    tl.store(dx_ptr + b * sdb + rows[:, None] * sdn + rd[None, :] * sdd, dx, mask=mask_d)


@torch.library.custom_op(GRAM_OP, mutates_args=())
def gram_softmax_op(xn: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E, stats)``: ``E = softmax_rows(tau xn xnᵀ)``, ``xn = F.normalize(x)`` of rows ``x (..., N, d)``, and the
    float32 per-row ``(max, sum)`` of the softmax, ``(B, 2, N)`` (non-differentiable, for the backward).

    ``tau``: one value (0-d), or one per entry of x's first dimension (``(G,)``: several graphs, one launch)."""
    n, d = xn.shape[-2:]
    xb = xn.reshape(-1, n, d).float()
    bsz = xb.shape[0]
    per_tau = _per_tau(xn, tau)
    e = torch.empty((bsz, n, n), dtype=torch.float32, device=xn.device)
    stats = torch.empty((bsz, 2, n), dtype=torch.float32, device=xn.device)
    launch = gram_launch(n, d)
    if bsz > 0:
        _gram_softmax_forward_kernel[(triton.cdiv(n, launch["BLOCK_R"]), bsz)](
            xb, tau.reshape(-1).float(), e, stats, n, d, per_tau, *xb.stride(), *e.stride(),
            PRECISION=dot_precision(), **launch, **COMPILE_OPTIONS,
        )  # fmt: skip
    return e.reshape(*xn.shape[:-2], n, n).to(xn.dtype), stats


def _per_tau(x: torch.Tensor, tau: torch.Tensor) -> int:
    """Problems per tau value: all of them for a 0-d tau, else those of one entry of x's first dimension."""
    problems = math.prod(x.shape[:-2])
    if tau.dim() == 0:
        return max(1, problems)
    if x.dim() < 3 or tau.shape != (x.shape[0],):
        raise ValueError(f"gram_softmax: tau must be 0-d or of shape (x.shape[0],), got {tuple(tau.shape)}")
    return max(1, problems // x.shape[0])


@gram_softmax_op.register_fake
def _(xn, tau):
    _per_tau(xn, tau)
    n = xn.shape[-2]
    problems = 1
    for size in xn.shape[:-2]:
        problems *= size
    return xn.new_empty((*xn.shape[:-1], n)), xn.new_empty((problems, 2, n), dtype=torch.float32)


@torch.library.custom_op(GRAM_OP + "_backward", mutates_args=())
def gram_softmax_backward_op(
    grad: torch.Tensor, xn: torch.Tensor, tau: torch.Tensor, stats: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = xn.shape[-2:]
    xb = xn.reshape(-1, n, d).float()
    gb = grad.reshape(-1, n, n).float()
    bsz = xb.shape[0]
    launch = gram_launch(n, d)
    programs = triton.cdiv(n, launch["BLOCK_R"])
    rowdot = torch.empty((bsz, n), dtype=torch.float32, device=xn.device)
    partials = torch.empty((bsz, programs), dtype=torch.float32, device=xn.device)
    # written by the dx kernel; no problem (bsz = 0): an empty sum
    dtau = (torch.empty if bsz > 0 else torch.zeros)(tau.numel(), dtype=tau.dtype, device=xn.device)
    dx = torch.empty_like(xb)
    tau_t = tau.reshape(-1).float()
    per_tau = _per_tau(xn, tau)
    stats = stats.contiguous()
    if bsz > 0:
        _gram_softmax_rows_kernel[(programs, bsz)](
            xb, tau_t, stats, gb, rowdot, partials, n, d, per_tau, *xb.stride(), *gb.stride(),
            PRECISION=dot_precision(), **launch, **COMPILE_OPTIONS,
        )  # fmt: skip
        _gram_softmax_dx_kernel[(programs, bsz)](
            xb, tau_t, stats, gb, rowdot, dx, partials, dtau, n, d, per_tau, *xb.stride(), *gb.stride(), *dx.stride(),
            PRECISION=dot_precision(), **launch, **COMPILE_OPTIONS,
        )  # fmt: skip
    return dx.reshape(xn.shape).to(xn.dtype), dtau.reshape(tau.shape)


@gram_softmax_backward_op.register_fake
def _(grad, xn, tau, stats):
    return torch.empty_like(xn), torch.empty_like(tau)


def _gram_setup_context(ctx, inputs, output) -> None:
    xn, tau = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no zero tensor (a kernel) for the non-differentiable output's grad
    ctx.save_for_backward(xn, tau, output[1])


def _gram_backward(ctx, grad_e, _grad_stats):
    xn, tau, stats = ctx.saved_tensors
    return gram_softmax_backward_op(grad_e, xn, tau, stats)


gram_softmax_op.register_autograd(_gram_backward, setup_context=_gram_setup_context)


def gram_softmax(xn: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``softmax_rows(tau · xn xnᵀ)``, ``xn = F.normalize(x, eps=1e-12)`` of ``x (..., N, d)`` -> ``(..., N, N)``.

    Neither xn nor the Gram matrix is written; the gradient flows to ``x``."""
    return gram_softmax_op(xn, tau)[0]
