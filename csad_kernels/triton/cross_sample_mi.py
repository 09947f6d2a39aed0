"""Triton cross-sample MI loss from pair scores ``m (..., N, N)`` -> ``(...)``: kernels, launchers, autograd.

Ω comes from the labels ``(..., N, K)`` and the tolerance, built tile by tile in registers (no N×N
mask is written), or from an explicit boolean mask read as bytes. Optional ``groups (..., N)`` labels keep
only the pairs within one group on both sides, also built tile by tile.

Forward: one program per (problem, block of rows) walks the column blocks of its rows and writes
per-program partials for each side: ``cs`` an online max and sum of exponentials (``x = -m`` on Ω,
``x = m`` off Ω) and the member count; ``jsd`` the sum of softplus and the count; ``ms`` as ``cs`` with
``x = -w₊ m`` on Ω and ``x = w₋ m`` off Ω, plus the spread ``Σ e^{x - max} (max - x)`` (non-negative terms) for
the scales' gradients. The launcher combines the partials per problem in float64:
``lse = log Σ_p sum_p e^{max_p - max}`` + max, the value ``softplus(lse - log n)`` (``log(1 + mean e^x)``; no
``- log n`` for ``reduction="sum"``; divided by ``w`` for ms), and the backward's per-problem statistics
``(shift_in, shift_out, scale_in, scale_out)`` kept in float64, for ms followed by ``dI/dw₊, dI/dw₋``:
``dI/dw = (h(L) + σ(L) (H - log n)) / w²`` with ``L`` the softplus argument, ``h(L) = softplus(L) - σ(L) L``
(the binary entropy of σ(L), formed without cancellation) and ``H = E_p[lse - x] >= 0`` (``- log n`` only for
"mean"). An empty side contributes 0 with zero gradient.

Backward: one program per (problem, row block) writes
``dm = g (scale_in w_in [Ω] - scale_out w_out [¬Ω])`` with ``w = e^{x - lse}`` (``x - lse`` is formed
in float64, then exponentiated in float32: a float32 lse would cost ~1e-6 relative in every weight)
for ``cs`` and ``ms`` (the same ``dm``: the scale ``w`` cancels), and ``w = sigmoid(x)`` for ``jsd``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import load_tile, log1p_small, softplus, store_tile, tile_mask
from csad_kernels.triton.launch_settings import COMPILE_OPTIONS, loss_tiles, stats_launch

OP = "csad_triton::cross_sample_mi"
# the kernels' ESTIMATOR: 0 for estimator="cs" (Eq. 2), 1 for "jsd" (Eq. 1), 2 for "ms"
ESTIMATOR_CODES = {"cs": 0, "jsd": 1, "ms": 2}
# partials per program: max_in, sum_in, max_out, sum_out (cs, ms) | sum_in, -, sum_out, - (jsd); cnt_in, cnt_out;
# spread_in, spread_out (ms only)
PARTIALS = 8


@triton.jit
def omega_tile(
    lab_ptr, mask_ptr, grp_ptr, b, rows, cols, N, K, tol, slb, sln, slk, smb, smn, smm, sgb, sgn,
    HAS_MASK: tl.constexpr, HAS_GROUPS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``(inside, outside)`` of a rows × cols tile: Ω and ¬Ω restricted to valid entries (and, with groups, to
    the pairs within one group)."""
    valid = tile_mask(rows, cols, N, N)
    if HAS_GROUPS:
        ga = tl.load(grp_ptr + b * sgb + rows * sgn, mask=rows < N, other=0)
        gc = tl.load(grp_ptr + b * sgb + cols * sgn, mask=cols < N, other=0)
        valid = valid & (ga[:, None] == gc[None, :])
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
def _scored_tile(
    m_ptr, lab_ptr, mask_ptr, grp_ptr, b, rows, cols, N, K, tol, smb, smn, smm, slb, sln, slk, sqb, sqn, sqm,
    sgb, sgn, HAS_MASK: tl.constexpr, HAS_GROUPS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``(inside, outside, x)`` of a rows × cols tile: :func:`omega_tile` and the scores (0 outside the matrix)."""
    inside, outside = omega_tile(
        lab_ptr, mask_ptr, grp_ptr, b, rows, cols, N, K, tol, slb, sln, slk, sqb, sqn, sqm, sgb, sgn,
        HAS_MASK, HAS_GROUPS, BLOCK_R, BLOCK_C,
    )  # fmt: skip
    return inside, outside, load_tile(m_ptr + b * smb, rows, cols, N, N, smn, smm)


@triton.jit
def _loss_scales(w_ptr, ESTIMATOR: tl.constexpr):
    """``(w₊, w₋)`` of estimator="ms" (1, 1 for the others)."""
    w_pos = 1.0
    w_neg = 1.0
    if ESTIMATOR == 2:
        w_pos = tl.load(w_ptr)
        w_neg = tl.load(w_ptr + 1)
    return w_pos, w_neg


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
def _online_lse_spread(run_max, run_sum, run_spread, x, member):
    """:func:`_online_lse` that also carries ``Σ e^{x - max} (max - x)`` per row (every term >= 0)."""
    xm = tl.where(member, x, float("-inf"))
    new_max = tl.maximum(run_max, tl.max(xm, axis=1))
    safe = tl.where(new_max == float("-inf"), 0.0, new_max)
    scale = tl.exp(run_max - safe)
    ex = tl.exp(xm - safe[:, None])
    # rows without members so far have run_sum 0 and run_max -inf: their carried spread is 0 (no inf * 0)
    carried = run_spread + tl.where(run_sum > 0.0, safe - run_max, 0.0) * run_sum
    run_spread = scale * carried + tl.sum(tl.where(member, ex * (safe[:, None] - x), 0.0), axis=1)
    return new_max, run_sum * scale + tl.sum(ex, axis=1), run_spread


@triton.jit
def _collapse_spread(run_max, run_sum, run_spread):
    """Per-row spreads -> the program's spread relative to its max (see :func:`_collapse_lse`)."""
    pmax = tl.max(run_max, axis=0)
    safe = tl.where(pmax == float("-inf"), 0.0, pmax)
    carried = run_spread + tl.where(run_sum > 0.0, safe - run_max, 0.0) * run_sum
    return tl.sum(tl.exp(run_max - safe) * carried, axis=0)


@triton.jit
def _collapse_lse(run_max, run_sum):
    """Per-row (max, sum) -> the program's (max, sum) with ``sum`` relative to ``e^max`` (max may be -inf)."""
    pmax = tl.max(run_max, axis=0)
    safe = tl.where(pmax == float("-inf"), 0.0, pmax)
    return pmax, tl.sum(run_sum * tl.exp(run_max - safe), axis=0)


@triton.jit
def _csmi_forward_kernel(
    m_ptr, lab_ptr, mask_ptr, grp_ptr, w_ptr, part_ptr, N, K, tol,
    smb, smn, smm, slb, sln, slk, sqb, sqn, sqm, sgb, sgn,
    ESTIMATOR: tl.constexpr, HAS_MASK: tl.constexpr, HAS_GROUPS: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    w_pos, w_neg = _loss_scales(w_ptr, ESTIMATOR)
    spread_in = tl.zeros((BLOCK_R,), dtype=tl.float32)
    spread_out = tl.zeros((BLOCK_R,), dtype=tl.float32)
    max_in = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    max_out = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    sum_in = tl.zeros((BLOCK_R,), dtype=tl.float32)
    sum_out = tl.zeros((BLOCK_R,), dtype=tl.float32)
    cnt_in = tl.zeros((BLOCK_R,), dtype=tl.int32)
    cnt_out = tl.zeros((BLOCK_R,), dtype=tl.int32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        inside, outside, x = _scored_tile(
            m_ptr, lab_ptr, mask_ptr, grp_ptr, b, rows, cols, N, K, tol, smb, smn, smm, slb, sln, slk, sqb, sqn, sqm,
            sgb, sgn, HAS_MASK, HAS_GROUPS, BLOCK_R, BLOCK_C,
        )  # fmt: skip
        cnt_in += tl.sum(inside.to(tl.int32), axis=1)
        cnt_out += tl.sum(outside.to(tl.int32), axis=1)
        if ESTIMATOR == 0:
            max_in, sum_in = _online_lse(max_in, sum_in, -x, inside)
            max_out, sum_out = _online_lse(max_out, sum_out, x, outside)
        elif ESTIMATOR == 2:
            max_in, sum_in, spread_in = _online_lse_spread(max_in, sum_in, spread_in, -w_pos * x, inside)
            max_out, sum_out, spread_out = _online_lse_spread(max_out, sum_out, spread_out, w_neg * x, outside)
        else:
            sum_in += tl.sum(tl.where(inside, softplus(-x), 0.0), axis=1)
            sum_out += tl.sum(tl.where(outside, softplus(x), 0.0), axis=1)
    base = part_ptr + (b * tl.num_programs(0) + pr) * 8
    if ESTIMATOR != 1:
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
    if ESTIMATOR == 2:
        tl.store(base + 6, _collapse_spread(max_in, sum_in, spread_in))
        tl.store(base + 7, _collapse_spread(max_out, sum_out, spread_out))


@triton.jit
def _csmi_backward_kernel(
    m_ptr, lab_ptr, mask_ptr, grp_ptr, w_ptr, stats_ptr, g_ptr, dm_ptr, N, K, tol,
    smb, smn, smm, slb, sln, slk, sqb, sqn, sqm, sgb, sgn, sstb, sggb, sdb, sdn, sdm,
    ESTIMATOR: tl.constexpr, HAS_MASK: tl.constexpr, HAS_GROUPS: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    shift_in = tl.load(stats_ptr + b * sstb)  # float64
    shift_out = tl.load(stats_ptr + b * sstb + 1)
    g = tl.load(g_ptr + b * sggb).to(tl.float64)
    coef_in = (g * tl.load(stats_ptr + b * sstb + 2)).to(tl.float32)
    coef_out = (g * tl.load(stats_ptr + b * sstb + 3)).to(tl.float32)
    w_pos, w_neg = _loss_scales(w_ptr, ESTIMATOR)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        inside, outside, x = _scored_tile(
            m_ptr, lab_ptr, mask_ptr, grp_ptr, b, rows, cols, N, K, tol, smb, smn, smm, slb, sln, slk, sqb, sqn, sqm,
            sgb, sgn, HAS_MASK, HAS_GROUPS, BLOCK_R, BLOCK_C,
        )  # fmt: skip
        if ESTIMATOR == 0:
            # e^{x - lse}, the difference formed in float64: members have x <= lse, non-members get e^-inf = 0
            x64 = x.to(tl.float64)
            w_in = tl.exp(tl.where(inside, (-x64 - shift_in).to(tl.float32), float("-inf")))
            w_out = tl.exp(tl.where(outside, (x64 - shift_out).to(tl.float32), float("-inf")))
        elif ESTIMATOR == 2:
            # as cs with the exponents -w₊ m and w₋ m, rounded to float32 as in the forward
            z_in = (-w_pos * x).to(tl.float64)
            z_out = (w_neg * x).to(tl.float64)
            w_in = tl.exp(tl.where(inside, (z_in - shift_in).to(tl.float32), float("-inf")))
            w_out = tl.exp(tl.where(outside, (z_out - shift_out).to(tl.float32), float("-inf")))
        else:
            w_in = _sigmoid(-x)
            w_out = _sigmoid(x)
        dm = tl.where(inside, coef_in * w_in, 0.0) - tl.where(outside, coef_out * w_out, 0.0)
        store_tile(dm_ptr + b * sdb, dm, rows, cols, N, N, sdn, sdm)


def _pairs_args(labels, mask, groups, device):
    """Kernel arguments for Ω and the groups: ``(lab, mask, grp, K, label strides, mask strides, group strides)``."""
    dummy = torch.empty(1, dtype=torch.int64, device=device)
    grp, grp_strides = (groups, groups.stride()) if groups is not None else (dummy, (0, 0))
    if mask is not None:
        mask_t = mask.view(torch.uint8)
        return dummy, mask_t, grp, 0, (0, 0, 0), mask_t.stride(), grp_strides
    return labels, dummy, grp, labels.shape[-1], labels.stride(), (0, 0, 0), grp_strides


@triton.jit
def _lse_side_stats(part, cnt_col, max_col, sum_col, spread_col, w, P, MEAN: tl.constexpr, ESTIMATOR: tl.constexpr,
                    BLOCK_P: tl.constexpr):  # fmt: skip
    """One side's ``(value, shift, scale, dI/dw)`` in float64 from the problem's partials ``part (P, 8)`` (cs, ms).

    ``lse = log Σ_p sum_p e^{max_p - big} + big``, ``L = lse - log n``; value ``softplus(L)`` (ms: ``/ w``), shift
    ``lse``, scale ``σ(L)``; ms: ``dI/dw = (h(L) + σ(L) (H - log n)) / w²`` with ``H = E_p[lse - x]`` (terms >= 0).
    An empty side gives zeros."""
    cnt = tl.zeros((), dtype=tl.float64)
    big = tl.full((), float("-inf"), dtype=tl.float64)
    for p0 in range(0, P, BLOCK_P):
        rows = p0 + tl.arange(0, BLOCK_P)
        cnt += tl.sum(tl.load(part + rows * 8 + cnt_col, mask=rows < P, other=0.0).to(tl.float64), axis=0)
        mx = tl.load(part + rows * 8 + max_col, mask=rows < P, other=float("-inf")).to(tl.float64)
        big = tl.maximum(big, tl.max(mx, axis=0))
    nonempty = cnt > 0.0
    big = tl.where(nonempty, big, 0.0)
    total = tl.zeros((), dtype=tl.float64)
    carried = tl.zeros((), dtype=tl.float64)
    for p0 in range(0, P, BLOCK_P):
        rows = p0 + tl.arange(0, BLOCK_P)
        mx = tl.load(part + rows * 8 + max_col, mask=rows < P, other=float("-inf")).to(tl.float64)
        sm = tl.load(part + rows * 8 + sum_col, mask=rows < P, other=0.0).to(tl.float64)
        rel = tl.exp(mx - big)
        total += tl.sum(sm * rel, axis=0)
        if ESTIMATOR == 2:
            spread = tl.load(part + rows * 8 + spread_col, mask=rows < P, other=0.0).to(tl.float64)
            gap = tl.where(sm > 0.0, big - mx, 0.0)  # programs without members: 0 (no inf * 0)
            carried += tl.sum(rel * (spread + gap * sm), axis=0)
    total = tl.where(nonempty, total, 1.0)
    lse = tl.log(total) + big
    log_n = tl.zeros((), dtype=tl.float64)
    if MEAN:
        log_n = tl.log(tl.maximum(cnt, 1.0))
    arg = lse - log_n
    value = tl.where(nonempty, softplus(arg), 0.0)
    scale = tl.where(nonempty, _sigmoid(arg), 0.0)
    shift = tl.where(nonempty, lse, 0.0)
    grad_w = tl.zeros((), dtype=tl.float64)
    if ESTIMATOR == 2:
        entropy = tl.log(total) + carried / total
        t = tl.exp(-tl.abs(arg))
        binary = log1p_small(t) + tl.abs(arg) * t / (1.0 + t)  # softplus(L) - σ(L) L
        grad_w = tl.where(nonempty, (binary + scale * (entropy - log_n)) / (w * w), 0.0)
        value = value / w
    return value, shift, scale, grad_w


@triton.jit
def _sum_side_stats(part, cnt_col, sum_col, P, MEAN: tl.constexpr, BLOCK_P: tl.constexpr):
    """jsd: one side's ``(value, scale)`` in float64: the mean (or sum) of softplus over the members, ``1 / n``."""
    cnt = tl.zeros((), dtype=tl.float64)
    total = tl.zeros((), dtype=tl.float64)
    for p0 in range(0, P, BLOCK_P):
        rows = p0 + tl.arange(0, BLOCK_P)
        cnt += tl.sum(tl.load(part + rows * 8 + cnt_col, mask=rows < P, other=0.0).to(tl.float64), axis=0)
        total += tl.sum(tl.load(part + rows * 8 + sum_col, mask=rows < P, other=0.0).to(tl.float64), axis=0)
    den = tl.full((), 1.0, dtype=tl.float64)
    if MEAN:
        den = tl.maximum(cnt, 1.0)
    return total / den, tl.where(cnt > 0.0, 1.0 / den, 0.0)


@triton.jit
def _csmi_stats_kernel(
    part_ptr, w_ptr, out_ptr, stats_ptr, P,
    ESTIMATOR: tl.constexpr, MEAN: tl.constexpr, STATS: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """One program per problem: the forward's partials ``(P, 8)`` -> ``I`` (in out's dtype) and the backward's
    float64 statistics ``(shift_in, shift_out, scale_in, scale_out[, dI/dw₊, dI/dw₋])``."""
    b = tl.program_id(0).to(tl.int64)
    part = part_ptr + b * P * 8
    stats = stats_ptr + b * STATS
    if ESTIMATOR == 1:
        v_in, scale_in = _sum_side_stats(part, 4, 1, P, MEAN, BLOCK_P)
        v_out, scale_out = _sum_side_stats(part, 5, 3, P, MEAN, BLOCK_P)
        shift_in = tl.zeros((), dtype=tl.float64)
        shift_out = tl.zeros((), dtype=tl.float64)
    else:
        w_pos = tl.full((), 1.0, dtype=tl.float64)
        w_neg = tl.full((), 1.0, dtype=tl.float64)
        if ESTIMATOR == 2:
            w_pos = tl.load(w_ptr).to(tl.float64)
            w_neg = tl.load(w_ptr + 1).to(tl.float64)
        v_in, shift_in, scale_in, dw_pos = _lse_side_stats(part, 4, 0, 1, 6, w_pos, P, MEAN, ESTIMATOR, BLOCK_P)
        v_out, shift_out, scale_out, dw_neg = _lse_side_stats(part, 5, 2, 3, 7, w_neg, P, MEAN, ESTIMATOR, BLOCK_P)
        if ESTIMATOR == 2:
            tl.store(stats + 4, dw_pos)
            tl.store(stats + 5, dw_neg)
    # through float32: the interpreter turns a float64 -> bfloat16 cast into NaN
    tl.store(out_ptr + b, (-v_in - v_out).to(tl.float32).to(out_ptr.dtype.element_ty))
    tl.store(stats, shift_in)
    tl.store(stats + 1, shift_out)
    tl.store(stats + 2, scale_in)
    tl.store(stats + 3, scale_out)


def _launch_forward(m, labels, mask, tolerance, estimator, reduction, groups=None, w=None, out_dtype=torch.float64):
    """Launcher on float32 ``m (B, N, N)``: returns ``(I (B,) in out_dtype, stats (B, 4) float64)``.

    ms: ``w`` is the float32 ``(2,)`` tensor ``[w₊, w₋]`` and stats are ``(B, 6)``: the four of "cs", then
    ``dI/dw₊, dI/dw₋`` per problem. Two launches: the partials, then one program per problem combines them.
    """
    bsz, n, _ = m.shape
    block_r, block_c = loss_tiles(n, estimator == "ms" or groups is not None)
    programs = triton.cdiv(n, block_r)
    part = torch.empty((bsz, programs, PARTIALS), dtype=torch.float32, device=m.device)
    value = torch.empty((bsz,), dtype=out_dtype, device=m.device)
    stats = torch.empty((bsz, 6 if estimator == "ms" else 4), dtype=torch.float64, device=m.device)
    if bsz == 0:
        return value, stats
    lab_t, mask_t, grp_t, k, lab_strides, mask_strides, grp_strides = _pairs_args(labels, mask, groups, m.device)
    w_t = w if w is not None else m
    _csmi_forward_kernel[(programs, bsz)](
        m, lab_t, mask_t, grp_t, w_t, part, n, k, tolerance,
        *m.stride(), *lab_strides, *mask_strides, *grp_strides,
        ESTIMATOR=ESTIMATOR_CODES[estimator], HAS_MASK=mask is not None, HAS_GROUPS=groups is not None,
        BLOCK_R=block_r, BLOCK_C=block_c, **COMPILE_OPTIONS,
    )  # fmt: skip
    _csmi_stats_kernel[(bsz,)](
        part, w_t, value, stats, programs, ESTIMATOR=ESTIMATOR_CODES[estimator], MEAN=reduction == "mean",
        STATS=stats.shape[1], **stats_launch(programs), **COMPILE_OPTIONS,
    )  # fmt: skip
    return value, stats


def _launch_backward(grad, m, labels, mask, stats, tolerance, estimator, groups=None, w=None):
    """``dI/dm`` (float32 ``(B, N, N)``) weighted by ``grad (B,)``."""
    bsz, n, _ = m.shape
    dm = torch.empty((bsz, n, n), dtype=torch.float32, device=m.device)
    if bsz == 0:
        return dm
    block_r, block_c = loss_tiles(n, estimator == "ms" or groups is not None)
    lab_t, mask_t, grp_t, k, lab_strides, mask_strides, grp_strides = _pairs_args(labels, mask, groups, m.device)
    _csmi_backward_kernel[(triton.cdiv(n, block_r), bsz)](
        m, lab_t, mask_t, grp_t, w if w is not None else m, stats, grad, dm, n, k, tolerance,
        *m.stride(), *lab_strides, *mask_strides, *grp_strides, stats.stride(0), grad.stride(0), *dm.stride(),
        ESTIMATOR=ESTIMATOR_CODES[estimator], HAS_MASK=mask is not None, HAS_GROUPS=groups is not None,
        BLOCK_R=block_r, BLOCK_C=block_c, **COMPILE_OPTIONS,
    )  # fmt: skip
    return dm


def _flat(m, labels, mask, groups=None):
    n = m.shape[-1]
    mb = m.reshape(-1, n, n).float()
    lab = labels.reshape(-1, n, labels.shape[-1]) if labels is not None else None
    msk = mask.reshape(-1, n, n) if mask is not None else None
    grp = groups.reshape(-1, n) if groups is not None else None
    return mb, lab, msk, grp


def _scales(w_pos, w_neg):
    """``[w₊, w₋]`` as the kernels' float32 ``(2,)`` tensor (None when the estimator has no scales)."""
    return None if w_pos is None else torch.stack([w_pos.reshape(()), w_neg.reshape(())]).float()


@torch.library.custom_op(OP, mutates_args=())
def cross_sample_mi_op(
    m: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    tolerance: int,
    estimator: str,
    reduction: str,
    groups: torch.Tensor | None = None,
    w_pos: torch.Tensor | None = None,
    w_neg: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I, stats)``: I in m's dtype, the per-problem float64 statistics of the backward (non-differentiable).

    ``w_pos``/``w_neg`` (0-d tensors) are the ms scales; None for cs and jsd.
    """
    mb, lab, msk, grp = _flat(m, labels, mask, groups)
    scales = _scales(w_pos, w_neg)
    value, stats = _launch_forward(mb, lab, msk, tolerance, estimator, reduction, grp, scales, out_dtype=m.dtype)
    return value.reshape(m.shape[:-2]), stats


@cross_sample_mi_op.register_fake
def _(m, labels, mask, tolerance, estimator, reduction, groups=None, w_pos=None, w_neg=None):
    problems = math.prod(m.shape[:-2])
    return m.new_empty(m.shape[:-2]), m.new_empty((problems, 6 if estimator == "ms" else 4), dtype=torch.float64)


@torch.library.custom_op(OP + "_backward", mutates_args=())
def cross_sample_mi_backward_op(
    grad: torch.Tensor,
    m: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    stats: torch.Tensor,
    tolerance: int,
    estimator: str,
    groups: torch.Tensor | None = None,
    w_pos: torch.Tensor | None = None,
    w_neg: torch.Tensor | None = None,
) -> torch.Tensor:
    mb, lab, msk, grp = _flat(m, labels, mask, groups)
    g = grad.reshape(-1).float()
    dm = _launch_backward(g, mb, lab, msk, stats.contiguous(), tolerance, estimator, grp, _scales(w_pos, w_neg))
    return dm.reshape(m.shape).to(m.dtype)


@cross_sample_mi_backward_op.register_fake
def _(grad, m, labels, mask, stats, tolerance, estimator, groups=None, w_pos=None, w_neg=None):
    return torch.empty_like(m)


def _setup_context(ctx, inputs, output) -> None:
    m, labels, mask, tolerance, estimator, _, groups, w_pos, w_neg = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no zero tensor (a kernel) for the non-differentiable output's grad
    ctx.save_for_backward(m, labels, mask, groups, w_pos, w_neg, output[1])
    ctx.options = (tolerance, estimator)


def _backward(ctx, grad, _grad_stats):
    m, labels, mask, groups, w_pos, w_neg, stats = ctx.saved_tensors
    tolerance, estimator = ctx.options
    grad_m = cross_sample_mi_backward_op(grad, m, labels, mask, stats, tolerance, estimator, groups, w_pos, w_neg)
    grad_w_pos = grad_w_neg = None
    if estimator == "ms":  # Σ_b g_b dI_b/dw, both scales in one matrix-vector product (float64)
        grad_w_pos, grad_w_neg = torch.mv(stats[:, 4:].mT, grad.reshape(-1).double()).unbind()
        grad_w_pos, grad_w_neg = grad_w_pos.to(w_pos.dtype), grad_w_neg.to(w_neg.dtype)
    return grad_m, None, None, None, None, None, None, grad_w_pos, grad_w_neg


cross_sample_mi_op.register_autograd(_backward, setup_context=_setup_context)


def scale_tensors(estimator, w_pos, w_neg, like):
    """The ms scales as 0-d tensors ``(w₊, w₋)`` (``w₋`` None: the same tensor as ``w₊``); else ``(None, None)``."""
    if estimator != "ms":
        return None, None
    if not isinstance(w_pos, torch.Tensor):
        w_pos = torch.tensor(float(w_pos), dtype=torch.float32, device=like.device)
    if w_neg is None:
        return w_pos, w_pos
    if not isinstance(w_neg, torch.Tensor):
        w_neg = torch.tensor(float(w_neg), dtype=torch.float32, device=like.device)
    return w_pos, w_neg


def cross_sample_mi(m, labels, mask, tolerance, estimator, reduction, groups=None, w_pos=1.0, w_neg=None):
    """Triton estimator loss from pair scores; arguments as the public op after validation (labels (..., N, K))."""
    w_pos, w_neg = scale_tensors(estimator, w_pos, w_neg, m)
    return cross_sample_mi_op(m, labels, mask, int(tolerance), estimator, reduction, groups, w_pos, w_neg)[0]
