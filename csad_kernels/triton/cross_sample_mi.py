"""Triton cross-sample MI loss from pair scores ``m (..., N, N)`` -> ``(...)``: kernels, launchers, autograd.

Ω comes from the labels ``(..., N, K)`` and the tolerance, built tile by tile in registers (no N×N
mask is written), or from an explicit boolean mask read as bytes.

Forward: one program per (problem, block of rows) walks the column blocks of its rows and writes
per-program partials for each side: ``cs`` an online max and sum of exponentials (``x = -m`` on Ω,
``x = m`` off Ω) and the member count; ``jsd`` the sum of softplus and the count. The launcher combines
the partials per problem in float64: ``lse = log Σ_p sum_p e^{max_p - max}`` + max, the value
``softplus(lse - log n)`` (``log(1 + mean e^x)``; no ``- log n`` for ``reduction="sum"``), and the
backward's per-problem statistics ``(shift_in, shift_out, scale_in, scale_out)`` kept in float64.
An empty side contributes 0 with zero gradient.

Backward: one program per (problem, row block) writes
``dm = g (scale_in w_in [Ω] - scale_out w_out [¬Ω])`` with ``w = e^{x - lse}`` (``x - lse`` is formed
in float64, then exponentiated in float32: a float32 lse would cost ~1e-6 relative in every weight)
for ``cs``, and ``w = sigmoid(x)`` for ``jsd``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import interpreted, softplus

OP = "csad_triton::cross_sample_mi"
ESTIMATOR_CODES = {"cs": 0, "jsd": 1}
# partials per program: max_in, sum_in, max_out, sum_out (cs) | sum_in, -, sum_out, - (jsd); cnt_in, cnt_out
PARTIALS = 6


def _tiles(n: int) -> tuple[int, int]:
    """(rows per program, columns per step). The interpreter pays per program and step: big row blocks there,
    but columns in steps of 128 so that N > 128 in the tests runs the online log-sum-exp over several steps."""
    block_c = min(128 if interpreted() else 256, max(16, triton.next_power_of_2(n)))
    block_r = min(64 if interpreted() else 16, max(16, triton.next_power_of_2(n)))
    return block_r, block_c


@triton.jit
def omega_tile(
    lab_ptr, mask_ptr, b, rows, cols, N, K, tol, slb, sln, slk, smb, smn, smm,
    HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``(inside, outside)`` of a rows × cols tile: Ω and ¬Ω restricted to valid entries."""
    valid = (rows < N)[:, None] & (cols < N)[None, :]
    if HAS_MASK:
        om = tl.load(mask_ptr + b * smb + rows[:, None] * smn + cols[None, :] * smm, mask=valid, other=0) != 0
    else:
        diff = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.int64)
        for k in range(K):
            a = tl.load(lab_ptr + b * slb + rows * sln + k * slk, mask=rows < N, other=0)
            c = tl.load(lab_ptr + b * slb + cols * sln + k * slk, mask=cols < N, other=0)
            diff = tl.maximum(diff, tl.abs(a[:, None] - c[None, :]))
        om = diff <= tol
    return om & valid, (om == 0) & valid


@triton.jit
def _sigmoid(x):
    """``1 / (1 + e^-x)`` through ``e^-|x|``: no overflow for any finite x."""
    z = tl.exp(-tl.abs(x))
    return tl.where(x >= 0.0, 1.0 / (1.0 + z), z / (1.0 + z))


@triton.jit
def _online_lse(run_max, run_sum, x, member):
    """One step of a per-row online log-sum-exp over the members of a tile (rows with none stay -inf/0)."""
    xm = tl.where(member, x, float("-inf"))
    new_max = tl.maximum(run_max, tl.max(xm, axis=1))
    safe = tl.where(new_max == float("-inf"), 0.0, new_max)
    run_sum = run_sum * tl.exp(run_max - safe) + tl.sum(tl.exp(xm - safe[:, None]), axis=1)
    return new_max, run_sum


@triton.jit
def _collapse_lse(run_max, run_sum):
    """Per-row (max, sum) -> the program's (max, sum) with ``sum`` relative to ``e^max`` (max may be -inf)."""
    pmax = tl.max(run_max, axis=0)
    safe = tl.where(pmax == float("-inf"), 0.0, pmax)
    return pmax, tl.sum(run_sum * tl.exp(run_max - safe), axis=0)


@triton.jit
def _csmi_forward_kernel(
    m_ptr, lab_ptr, mask_ptr, part_ptr, N, K, tol,
    smb, smn, smm, slb, sln, slk, sqb, sqn, sqm,
    ESTIMATOR: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    max_in = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    max_out = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    sum_in = tl.zeros((BLOCK_R,), dtype=tl.float32)
    sum_out = tl.zeros((BLOCK_R,), dtype=tl.float32)
    cnt_in = tl.zeros((BLOCK_R,), dtype=tl.int32)
    cnt_out = tl.zeros((BLOCK_R,), dtype=tl.int32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        inside, outside = omega_tile(
            lab_ptr, mask_ptr, b, rows, cols, N, K, tol, slb, sln, slk, sqb, sqn, sqm, HAS_MASK, BLOCK_R, BLOCK_C
        )
        valid = (rows < N)[:, None] & (cols < N)[None, :]
        x = tl.load(m_ptr + b * smb + rows[:, None] * smn + cols[None, :] * smm, mask=valid, other=0.0)
        cnt_in += tl.sum(inside.to(tl.int32), axis=1)
        cnt_out += tl.sum(outside.to(tl.int32), axis=1)
        if ESTIMATOR == 0:
            max_in, sum_in = _online_lse(max_in, sum_in, -x, inside)
            max_out, sum_out = _online_lse(max_out, sum_out, x, outside)
        else:
            sum_in += tl.sum(tl.where(inside, softplus(-x), 0.0), axis=1)
            sum_out += tl.sum(tl.where(outside, softplus(x), 0.0), axis=1)
    base = part_ptr + (b * tl.num_programs(0) + pr) * 6
    if ESTIMATOR == 0:
        pmax_in, psum_in = _collapse_lse(max_in, sum_in)
        pmax_out, psum_out = _collapse_lse(max_out, sum_out)
        tl.store(base, pmax_in)
        tl.store(base + 1, psum_in)
        tl.store(base + 2, pmax_out)
        tl.store(base + 3, psum_out)
    else:
        tl.store(base, 0.0)
        tl.store(base + 1, tl.sum(sum_in, axis=0))
        tl.store(base + 2, 0.0)
        tl.store(base + 3, tl.sum(sum_out, axis=0))
    tl.store(base + 4, tl.sum(cnt_in, axis=0).to(tl.float32))
    tl.store(base + 5, tl.sum(cnt_out, axis=0).to(tl.float32))


@triton.jit
def _csmi_backward_kernel(
    m_ptr, lab_ptr, mask_ptr, stats_ptr, g_ptr, dm_ptr, N, K, tol,
    smb, smn, smm, slb, sln, slk, sqb, sqn, sqm, sgb, sdb, sdn, sdm,
    ESTIMATOR: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    shift_in = tl.load(stats_ptr + b * 4)  # float64
    shift_out = tl.load(stats_ptr + b * 4 + 1)
    g = tl.load(g_ptr + b * sgb).to(tl.float64)
    coef_in = (g * tl.load(stats_ptr + b * 4 + 2)).to(tl.float32)
    coef_out = (g * tl.load(stats_ptr + b * 4 + 3)).to(tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        inside, outside = omega_tile(
            lab_ptr, mask_ptr, b, rows, cols, N, K, tol, slb, sln, slk, sqb, sqn, sqm, HAS_MASK, BLOCK_R, BLOCK_C
        )
        valid = (rows < N)[:, None] & (cols < N)[None, :]
        x = tl.load(m_ptr + b * smb + rows[:, None] * smn + cols[None, :] * smm, mask=valid, other=0.0)
        if ESTIMATOR == 0:
            # e^{x - lse}, the difference formed in float64: members have x <= lse, non-members get e^-inf = 0
            x64 = x.to(tl.float64)
            w_in = tl.exp(tl.where(inside, (-x64 - shift_in).to(tl.float32), float("-inf")))
            w_out = tl.exp(tl.where(outside, (x64 - shift_out).to(tl.float32), float("-inf")))
        else:
            w_in = _sigmoid(-x)
            w_out = _sigmoid(x)
        dm = tl.where(inside, coef_in * w_in, 0.0) - tl.where(outside, coef_out * w_out, 0.0)
        tl.store(dm_ptr + b * sdb + rows[:, None] * sdn + cols[None, :] * sdm, dm, mask=valid)


def _pairs_args(labels, mask, device):
    """Kernel arguments for Ω: ``(lab, mask, K, label strides, mask strides)``."""
    dummy = torch.empty(1, dtype=torch.int64, device=device)
    if mask is not None:
        mask_t = mask.view(torch.uint8)
        return dummy, mask_t, 0, (0, 0, 0), mask_t.stride()
    return labels, dummy, labels.shape[-1], labels.stride(), (0, 0, 0)


def _side_stats(mx, sm, cnt, estimator, mean):
    """Per-problem (value, shift, scale) of one side from (B, P) float64 partials."""
    nonempty = cnt > 0
    if estimator == "cs":
        big = mx.amax(dim=-1)
        big = torch.where(nonempty, big, torch.zeros_like(big))
        total = (sm * torch.exp(mx - big[:, None])).sum(dim=-1)
        lse = torch.log(torch.where(nonempty, total, torch.ones_like(total))) + big
        arg = lse - torch.log(cnt.clamp_min(1)) if mean else lse
        value = torch.where(nonempty, torch.logaddexp(arg, torch.zeros_like(arg)), torch.zeros_like(arg))
        scale = torch.where(nonempty, torch.sigmoid(arg), torch.zeros_like(arg))
        return value, torch.where(nonempty, lse, torch.zeros_like(lse)), scale
    total = sm.sum(dim=-1)
    den = cnt.clamp_min(1) if mean else torch.ones_like(cnt)
    return total / den, torch.zeros_like(total), torch.where(nonempty, 1.0 / den, torch.zeros_like(den))


def csmi_forward(m, labels, mask, tolerance, estimator, reduction):
    """Launcher on float32 ``m (B, N, N)``: returns ``(I (B,) float64, stats (B, 4) float64)``."""
    bsz, n, _ = m.shape
    block_r, block_c = _tiles(n)
    programs = triton.cdiv(n, block_r)
    part = torch.empty((bsz, programs, PARTIALS), dtype=torch.float32, device=m.device)
    lab_t, mask_t, k, lab_strides, mask_strides = _pairs_args(labels, mask, m.device)
    if bsz > 0:
        _csmi_forward_kernel[(programs, bsz)](
            m, lab_t, mask_t, part, n, k, tolerance, *m.stride(), *lab_strides, *mask_strides,
            ESTIMATOR=ESTIMATOR_CODES[estimator], HAS_MASK=mask is not None, BLOCK_R=block_r, BLOCK_C=block_c,
        )  # fmt: skip
    part = part.double()
    mean = reduction == "mean"
    cnt_in, cnt_out = part[..., 4].sum(-1), part[..., 5].sum(-1)
    v_in, shift_in, scale_in = _side_stats(part[..., 0], part[..., 1], cnt_in, estimator, mean)
    v_out, shift_out, scale_out = _side_stats(part[..., 2], part[..., 3], cnt_out, estimator, mean)
    return -v_in - v_out, torch.stack([shift_in, shift_out, scale_in, scale_out], dim=-1)


def csmi_backward(grad, m, labels, mask, stats, tolerance, estimator):
    """``dI/dm`` (float32 ``(B, N, N)``) weighted by ``grad (B,)``."""
    bsz, n, _ = m.shape
    dm = torch.empty((bsz, n, n), dtype=torch.float32, device=m.device)
    if bsz == 0:
        return dm
    block_r, block_c = _tiles(n)
    lab_t, mask_t, k, lab_strides, mask_strides = _pairs_args(labels, mask, m.device)
    _csmi_backward_kernel[(triton.cdiv(n, block_r), bsz)](
        m, lab_t, mask_t, stats, grad, dm, n, k, tolerance,
        *m.stride(), *lab_strides, *mask_strides, grad.stride(0), *dm.stride(),
        ESTIMATOR=ESTIMATOR_CODES[estimator], HAS_MASK=mask is not None, BLOCK_R=block_r, BLOCK_C=block_c,
    )  # fmt: skip
    return dm


def _flat(m, labels, mask):
    n = m.shape[-1]
    mb = m.reshape(-1, n, n).float()
    lab = labels.reshape(-1, n, labels.shape[-1]) if labels is not None else None
    msk = mask.reshape(-1, n, n) if mask is not None else None
    return mb, lab, msk


@torch.library.custom_op(OP, mutates_args=())
def cross_sample_mi_op(
    m: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    tolerance: int,
    estimator: str,
    reduction: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I, stats)``: I in m's dtype, the per-problem float64 statistics of the backward (non-differentiable)."""
    mb, lab, msk = _flat(m, labels, mask)
    value, stats = csmi_forward(mb, lab, msk, tolerance, estimator, reduction)
    return value.reshape(m.shape[:-2]).to(m.dtype), stats


@cross_sample_mi_op.register_fake
def _(m, labels, mask, tolerance, estimator, reduction):
    problems = math.prod(m.shape[:-2])
    return m.new_empty(m.shape[:-2]), m.new_empty((problems, 4), dtype=torch.float64)


@torch.library.custom_op(OP + "_backward", mutates_args=())
def cross_sample_mi_backward_op(
    grad: torch.Tensor,
    m: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    stats: torch.Tensor,
    tolerance: int,
    estimator: str,
) -> torch.Tensor:
    mb, lab, msk = _flat(m, labels, mask)
    dm = csmi_backward(grad.reshape(-1).float(), mb, lab, msk, stats.contiguous(), tolerance, estimator)
    return dm.reshape(m.shape).to(m.dtype)


@cross_sample_mi_backward_op.register_fake
def _(grad, m, labels, mask, stats, tolerance, estimator):
    return torch.empty_like(m)


def _setup_context(ctx, inputs, output) -> None:
    m, labels, mask, tolerance, estimator, _ = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(m, labels, mask, output[1])
    ctx.options = (tolerance, estimator)


def _backward(ctx, grad, _grad_stats):
    m, labels, mask, stats = ctx.saved_tensors
    tolerance, estimator = ctx.options
    grad_m = cross_sample_mi_backward_op(grad, m, labels, mask, stats, tolerance, estimator)
    return grad_m, None, None, None, None, None


cross_sample_mi_op.register_autograd(_backward, setup_context=_setup_context)


def cross_sample_mi(m, labels, mask, tolerance, estimator, reduction):
    """Triton estimator loss from pair scores; arguments as the public op after validation (labels (..., N, K))."""
    return cross_sample_mi_op(m, labels, mask, int(tolerance), estimator, reduction)[0]
