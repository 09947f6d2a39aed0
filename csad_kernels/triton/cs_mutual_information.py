"""Triton fused cross-sample MI estimator ``I(u, v)`` (DESIGN.md §2), forward and backward.

Small-N regime (one program per problem, everything on chip): a single kernel normalises u and v,
builds ``Sc = un vn^T``, the adjacencies ``Ey = softmax(tau_y un un^T)``, ``Eb``, the RWR solve in
product form ``W = (I + A)(I + A^2)...`` (``A = cE``, k factors with ``c^(2^k)/(1-c) <= 1e-8``, GEMMs
at the backend dot precision, _common), the renormalised rows R, the symmetric cross-entropy, the
critic M, Ω from the labels (or the explicit mask), the optional groups (only pairs within one group count)
and the masked log-sum-exp / softplus reduction. ``estimator="ms"`` scores the unscaled similarity with
``w₊ = alpha`` on Ω and ``w₋ = alpha_neg`` off Ω; their gradients come from the entropy form of
:mod:`csad_kernels.triton.cross_sample_mi`.
The backward kernel (the same kernel with ``BACKWARD=True``) recomputes that forward in registers,
so no N×N buffer is saved between forward and backward, and then runs the whole chain rule on chip:
loss weights -> dM -> dalpha, dSc, dSs -> dR -> renormalisation -> ``dE = c Wᵀ dW Wᵀ`` -> softmax
-> dtau, dGram -> row normalisation -> du, dv.

Large-N regime (N > small_n_limit(); see ``_tiled``): tiled multi-program kernels chained under autograd:
``Sc`` (tiled cosine), each graph from the normalised rows by one fused Gram + online-softmax kernel (no
similarity matrix written; its backward recomputes E and uses the centred ``dtau``), the product-form RWR,
the symmetric cross-entropy, ``M = alpha (Sc + Ss)`` and the tiled masked loss of
:mod:`csad_kernels.triton.cross_sample_mi` (Ω from the labels in the kernel, float64 per-problem statistics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from csad_kernels.triton._common import (
    NORM_EPS,
    dot_precision,
    interpreted,
    log1p_small,
    normalize_rows,
    normalize_rows_backward,
    num_factors,
    safe_log,
    sigmoid,
    softplus,
)
from csad_kernels.triton.launch_settings import COMPILE_OPTIONS, small_launch, small_path_fits

OP = "csad_triton::cs_mutual_information"
SIMILARITY_CODES = {"joint": 0, "content": 1, "structural": 2}
# the kernels' ESTIMATOR: 0 for estimator="cs" (Eq. 2), 1 for "jsd" (Eq. 1), 2 for "ms"
ESTIMATOR_CODES = {"cs": 0, "jsd": 1, "ms": 2}
TINY: tl.constexpr = tl.constexpr(1.1754943508222875e-38)


SMALL_N_OVERRIDE: int | None = None  # tests set this to exercise the tiled regime at small N


def small_n_limit() -> int:
    """Largest N of the one-program-per-problem regime.

    On a GPU the N×N tiles must fit in registers/shared memory: N <= 64. The interpreter has no
    such limit and runs the fused kernel up to N = 256.
    """
    if SMALL_N_OVERRIDE is not None:
        return SMALL_N_OVERRIDE
    return 256 if interpreted() else 64


@triton.jit
def _adjacency(xn, tau, valid, PRECISION: tl.constexpr):
    """``(Gram, E)`` with ``E = softmax_rows(tau * xn xnᵀ)`` over the valid columns; padded rows are 0."""
    gram = tl.dot(xn, tl.trans(xn), input_precision=PRECISION)
    z = tl.where(valid[None, :], tau * gram, float("-inf"))
    zmax = tl.max(z, axis=1)
    p = tl.exp(z - zmax[:, None])
    e = p / tl.sum(p, axis=1)[:, None]
    return gram, tl.where(valid[:, None], e, 0.0)


@triton.jit
def _rwr(e, c, idx, valid2, NUM_FACTORS: tl.constexpr, PRECISION: tl.constexpr):
    """``(W, R, s)``: ``W = (I - cE)^-1`` by the product form, ``R = (1-c)W / s`` with ``s`` its row sums."""
    eye = tl.where(idx[:, None] == idx[None, :], 1.0, 0.0)
    a = c * e
    w = eye + a
    p = a
    for _ in tl.static_range(NUM_FACTORS - 1):
        p = tl.dot(p, p, input_precision=PRECISION)
        w = w + tl.dot(w, p, input_precision=PRECISION)
    r = (1.0 - c) * w
    s = tl.sum(tl.where(valid2, r, 0.0), axis=1)
    s = tl.where(s > 0.0, s, 1.0)
    r = tl.where(valid2, r / s[:, None], 0.0)
    return w, r, s


@triton.jit
def _rwr_backward(dr, r, w, s, c, valid2, PRECISION: tl.constexpr):
    """``dE`` from ``dR``: through the row renormalisation, ``R~ = (1-c) W``, then ``dE = c Wᵀ dW Wᵀ``."""
    dr = tl.where(valid2, dr, 0.0)
    dw = (1.0 - c) * (dr - tl.sum(dr * r, axis=1)[:, None]) / s[:, None]
    wt = tl.trans(w)
    de = c * tl.dot(tl.dot(wt, dw, input_precision=PRECISION), wt, input_precision=PRECISION)
    return tl.where(valid2, de, 0.0)


@triton.jit
def _lse_side(x, member, s, MEAN: tl.constexpr, WITH_S: tl.constexpr):
    """``(log(1 + mean_member e^x), d/dx, D, Σ (d/dx) s)``; an empty side gives 0 with zero gradients.

    ``D = softplus(L) - Σ (d/dx) x`` (``L`` the softplus argument) gives the ms scale's gradient,
    ``d/dw [-softplus(L(w x)) / w] = D / w²``; it is formed as ``h(L) + σ(L) (H - log n)`` with
    ``h(L) = softplus(L) - σ(L) L`` and ``H = E_p[lse - x] >= 0``: sums of non-negative terms.

    ``Σ (d/dx) s`` (``WITH_S``, else 0) is the side's part of dI/dalpha; with ``WITH_S`` it and the normaliser
    Σ e^x are float64: every weight shares the factor σ(L) / Σ e^x, so a float32 rounding of it shifts the sum by
    ~eps |sum|, and a batch's problems add such sums of ±20 up to a total near 0
    (tests/test_op_cs_mutual_information.py).
    """
    cnt = tl.sum(tl.sum(tl.where(member, 1.0, 0.0), axis=1), axis=0)
    nonempty = cnt > 0.0
    mx = tl.max(tl.max(tl.where(member, x, float("-inf")), axis=1), axis=0)
    mx = tl.where(nonempty, mx, 0.0)
    ex = tl.where(member, tl.exp(tl.where(member, x, mx) - mx), 0.0)
    if WITH_S:
        total = tl.sum(tl.sum(ex.to(tl.float64), axis=1), axis=0)
    else:
        total = tl.sum(tl.sum(ex, axis=1), axis=0)
    safe_total = tl.where(nonempty, total, 1.0)
    lse = tl.log(safe_total) + mx
    log_n = 0.0
    if MEAN:
        log_n = tl.log(tl.maximum(cnt, 1.0))
    lse = lse - log_n
    value = tl.where(nonempty, softplus(lse), 0.0)
    scale = sigmoid(lse)
    factor = tl.where(nonempty, scale / safe_total, 0.0)
    spread = tl.sum(tl.sum(tl.where(member, ex * (mx - x), 0.0), axis=1), axis=0)
    entropy = tl.log(safe_total) + spread / safe_total
    t = tl.exp(-tl.abs(lse))
    binary = log1p_small(t) + tl.abs(lse) * t / (1.0 + t)
    dscale = tl.where(nonempty, binary + scale * (entropy - log_n), 0.0)
    side_s = 0.0
    if WITH_S:
        side_s = factor * tl.sum(tl.sum(ex.to(tl.float64) * s.to(tl.float64), axis=1), axis=0)
    return value, ex * factor.to(tl.float32), dscale, side_s


@triton.jit
def _softplus_side(x, member, MEAN: tl.constexpr):
    """``(mean_member softplus(x), d/dx)`` (a sum when not MEAN); 0 if empty."""
    total = tl.sum(tl.sum(tl.where(member, softplus(x), 0.0), axis=1), axis=0)
    den = 1.0
    if MEAN:
        den = tl.maximum(tl.sum(tl.sum(tl.where(member, 1.0, 0.0), axis=1), axis=0), 1.0)
    return total / den, tl.where(member, sigmoid(x) / den, 0.0)


@triton.jit
def _csmi_small_kernel(
    u_ptr, v_ptr, lab_ptr, mask_ptr, grp_ptr, par_ptr, out_ptr, gout_ptr, du_ptr, dv_ptr, dpar_ptr,
    N, D, K, tol, c,
    sub, sun, sud, svb, svn, svd, slb, sln, slk, smb, smn, smm, sqb, sqn, sgb,
    SIMILARITY: tl.constexpr, ESTIMATOR: tl.constexpr, MEAN: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_GROUPS: tl.constexpr,
    NUM_FACTORS: tl.constexpr, BACKWARD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EPS: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK_N)
    rd = tl.arange(0, BLOCK_D)
    valid = idx < N
    valid2 = valid[:, None] & valid[None, :]
    rows_mask = valid[:, None] & (rd < D)[None, :]
    u = tl.load(u_ptr + b * sub + idx[:, None] * sun + rd[None, :] * sud, mask=rows_mask, other=0.0)
    v = tl.load(v_ptr + b * svb + idx[:, None] * svn + rd[None, :] * svd, mask=rows_mask, other=0.0)
    un, uden = normalize_rows(u, EPS)
    vn, vden = normalize_rows(v, EPS)
    alpha = tl.load(par_ptr)
    tau_y = tl.load(par_ptr + 1)
    tau_b = tl.load(par_ptr + 2)
    alpha_neg = tl.load(par_ptr + 3)

    # ---- critic M = alpha * S (ms: M = S, scaled by alpha on Ω and alpha_neg off Ω below)
    s = tl.zeros((BLOCK_N, BLOCK_N), dtype=tl.float32)
    if SIMILARITY != 2:
        s += tl.dot(un, tl.trans(vn), input_precision=PRECISION)
    if SIMILARITY != 1:
        gram_y, ey = _adjacency(un, tau_y, valid, PRECISION)
        gram_b, eb = _adjacency(vn, tau_b, valid, PRECISION)
        wy, ry, sy = _rwr(ey, c, idx, valid2, NUM_FACTORS, PRECISION)
        wb, rb, sb = _rwr(eb, c, idx, valid2, NUM_FACTORS, PRECISION)
        ly = safe_log(ry)
        lb = safe_log(rb)
        s += 0.5 * (
            tl.dot(ry, tl.trans(lb), input_precision=PRECISION) + tl.dot(ly, tl.trans(rb), input_precision=PRECISION)
        )
    m = s
    if ESTIMATOR != 2:
        m = alpha * s

    # ---- Ω, built from the labels in registers (or read from the explicit mask)
    if HAS_MASK:
        om = tl.load(mask_ptr + b * smb + idx[:, None] * smn + idx[None, :] * smm, mask=valid2, other=0) != 0
    else:
        diff = tl.zeros((BLOCK_N, BLOCK_N), dtype=tl.int64)
        for k in range(K):
            lab = tl.load(lab_ptr + b * slb + idx * sln + k * slk, mask=valid, other=0)
            diff = tl.maximum(diff, tl.abs(lab[:, None] - lab[None, :]))
        om = diff <= tol
    counted = valid2
    if HAS_GROUPS:
        grp = tl.load(grp_ptr + b * sqb + idx * sqn, mask=valid, other=0)
        counted = counted & (grp[:, None] == grp[None, :])
    inside = om & counted
    outside = (om == 0) & counted

    # ---- I = -side(Ω, -M) - side(¬Ω, M); dI/dM = w_in - w_out
    # (ms: I = -side(Ω, -alpha S) / alpha - side(¬Ω, alpha_neg S) / alpha_neg; dI/dS = w_in - w_out too)
    if ESTIMATOR == 0:
        val_in, w_in, _d_in, s_in = _lse_side(-m, inside, s, MEAN, BACKWARD)
        val_out, w_out, _d_out, s_out = _lse_side(m, outside, s, MEAN, BACKWARD)
    elif ESTIMATOR == 2:
        val_in, w_in, d_in, _s_in = _lse_side(-alpha * m, inside, s, MEAN, False)
        val_out, w_out, d_out, _s_out = _lse_side(alpha_neg * m, outside, s, MEAN, False)
        val_in = val_in / alpha
        val_out = val_out / alpha_neg
    else:
        val_in, w_in = _softplus_side(-m, inside, MEAN)
        val_out, w_out = _softplus_side(m, outside, MEAN)
    if not BACKWARD:
        tl.store(out_ptr + b, -val_in - val_out)
    else:
        go = tl.load(gout_ptr + b * sgb)
        gm = go * (w_in - w_out)
        dalpha_neg = 0.0
        gs = alpha * gm
        if ESTIMATOR == 0:
            dalpha = go * (s_in - s_out)
        elif ESTIMATOR == 2:
            dalpha = go * d_in / (alpha * alpha)
            dalpha_neg = go * d_out / (alpha_neg * alpha_neg)
            gs = gm
        else:
            dalpha = tl.sum(tl.sum(gm.to(tl.float64) * s.to(tl.float64), axis=1), axis=0)
        dun = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        dvn = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        dtau_y = 0.0
        dtau_b = 0.0
        if SIMILARITY != 2:
            dun += tl.dot(gs, vn, input_precision=PRECISION)
            dvn += tl.dot(tl.trans(gs), un, input_precision=PRECISION)
        if SIMILARITY != 1:
            # Ss = 1/2 (Ry Lbᵀ + Ly Rbᵀ), L = log(max(R, tiny)): d log / dR = 1/R where R >= tiny
            inv_y = tl.where(ry >= TINY, 1.0 / tl.where(ry >= TINY, ry, 1.0), 0.0)
            inv_b = tl.where(rb >= TINY, 1.0 / tl.where(rb >= TINY, rb, 1.0), 0.0)
            gst = tl.trans(gs)
            dry = 0.5 * (tl.dot(gs, lb, input_precision=PRECISION) + tl.dot(gs, rb, input_precision=PRECISION) * inv_y)
            drb = 0.5 * (
                tl.dot(gst, ry, input_precision=PRECISION) * inv_b + tl.dot(gst, ly, input_precision=PRECISION)
            )
            dey = _rwr_backward(dry, ry, wy, sy, c, valid2, PRECISION)
            deb = _rwr_backward(drb, rb, wb, sb, c, valid2, PRECISION)
            # softmax rows: dZ = E * (dE - rowsum(dE * E)); Z = tau * Gram
            dzy = ey * (dey - tl.sum(dey * ey, axis=1)[:, None])
            dzb = eb * (deb - tl.sum(deb * eb, axis=1)[:, None])
            # dtau = sum dZ Gram = sum E dE (Gram - rowmean_E Gram): rows of dZ sum to 0, this form cancels less
            my = tl.sum(ey * gram_y, axis=1)
            mb = tl.sum(eb * gram_b, axis=1)
            dtau_y = tl.sum(tl.sum(ey * dey * (gram_y - my[:, None]), axis=1), axis=0)
            dtau_b = tl.sum(tl.sum(eb * deb * (gram_b - mb[:, None]), axis=1), axis=0)
            dgy = tau_y * dzy
            dgb = tau_b * dzb
            dun += tl.dot(dgy + tl.trans(dgy), un, input_precision=PRECISION)
            dvn += tl.dot(dgb + tl.trans(dgb), vn, input_precision=PRECISION)
        du = normalize_rows_backward(un, uden, dun, EPS)
        dv = normalize_rows_backward(vn, vden, dvn, EPS)
        out_rows = b * N * D + idx[:, None] * D + rd[None, :]
        tl.store(du_ptr + out_rows, du, mask=rows_mask)
        tl.store(dv_ptr + out_rows, dv, mask=rows_mask)
        tl.store(dpar_ptr + b * 4, dalpha)
        tl.store(dpar_ptr + b * 4 + 1, dtau_y)
        tl.store(dpar_ptr + b * 4 + 2, dtau_b)
        tl.store(dpar_ptr + b * 4 + 3, dalpha_neg)


def _launch_small(u, v, labels, mask, groups, tolerance, params, c, similarity, estimator, reduction, gout=None):
    """Runs the one-program-per-problem kernel on ``(B, N, d)`` float32 inputs.

    ``params`` is ``[alpha, tau_y, tau_b, alpha_neg]`` (alpha_neg: ms only). Forward (``gout`` None): returns
    ``I`` of shape (B,). Backward: returns ``(du, dv, dparams (B, 4))``.
    """
    bsz, n, d = u.shape
    device = u.device
    backward = gout is not None
    dummy = torch.empty(1, dtype=torch.int64, device=device)
    if mask is not None:
        mask_t, lab_t, k = mask.view(torch.uint8), dummy, 0
        lab_strides, mask_strides = (0, 0, 0), mask_t.stride()
    else:
        mask_t, lab_t, k = dummy, labels, labels.shape[-1]
        lab_strides, mask_strides = labels.stride(), (0, 0, 0)
    grp_t, grp_strides = (groups, groups.stride()) if groups is not None else (dummy, (0, 0))
    out = torch.empty(bsz, dtype=torch.float32, device=device)
    if backward:
        du = torch.empty((bsz, n, d), dtype=torch.float32, device=device)
        dv = torch.empty_like(du)
        dpar = torch.empty((bsz, 4), dtype=torch.float64, device=device)  # per problem; summed in float64
        gout_t, sgb = gout, gout.stride(0)
    else:
        du = dv = dpar = gout_t = out
        sgb = 0
    _csmi_small_kernel[(bsz,)](
        u, v, lab_t, mask_t, grp_t, params, out, gout_t, du, dv, dpar,
        n, d, k, tolerance, c,
        *u.stride(), *v.stride(), *lab_strides, *mask_strides, *grp_strides, sgb,
        SIMILARITY=SIMILARITY_CODES[similarity], ESTIMATOR=ESTIMATOR_CODES[estimator], MEAN=reduction == "mean",
        HAS_MASK=mask is not None, HAS_GROUPS=groups is not None, NUM_FACTORS=num_factors(c), BACKWARD=backward,
        EPS=NORM_EPS, PRECISION=dot_precision(), **small_launch(n, d, similarity), **COMPILE_OPTIONS,
    )  # fmt: skip
    return (du, dv, dpar) if backward else out


def _flat(u, v, labels, mask, groups, alpha, tau_y, tau_b, alpha_neg):
    n, d = u.shape[-2:]
    ub, vb = u.reshape(-1, n, d).float(), v.reshape(-1, n, d).float()
    lab = labels.reshape(-1, n, labels.shape[-1]) if labels is not None else None
    msk = mask.reshape(-1, n, n) if mask is not None else None
    grp = groups.reshape(-1, n) if groups is not None else None
    neg = alpha if alpha_neg is None else alpha_neg
    params = torch.stack([alpha.reshape(()), tau_y.reshape(()), tau_b.reshape(()), neg.reshape(())]).float()
    return ub, vb, lab, msk, grp, params


@torch.library.custom_op(OP, mutates_args=())
def cs_mutual_information_op(
    u: torch.Tensor,
    v: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    tolerance: int,
    alpha: torch.Tensor,
    tau_y: torch.Tensor,
    tau_b: torch.Tensor,
    c: float,
    similarity: str,
    estimator: str,
    reduction: str,
    groups: torch.Tensor | None = None,
    alpha_neg: torch.Tensor | None = None,
) -> torch.Tensor:
    """``I``; ``groups (..., N)`` restricts the pairs; ``alpha_neg`` is w₋ of ms (None: alpha)."""
    ub, vb, lab, msk, grp, params = _flat(u, v, labels, mask, groups, alpha, tau_y, tau_b, alpha_neg)
    out = _launch_small(ub, vb, lab, msk, grp, tolerance, params, c, similarity, estimator, reduction)
    return out.reshape(u.shape[:-2]).to(u.dtype)


@cs_mutual_information_op.register_fake
def _(u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups=None,
      alpha_neg=None):  # fmt: skip
    return u.new_empty(u.shape[:-2])


@torch.library.custom_op(OP + "_backward", mutates_args=())
def cs_mutual_information_backward_op(
    grad: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    tolerance: int,
    alpha: torch.Tensor,
    tau_y: torch.Tensor,
    tau_b: torch.Tensor,
    c: float,
    similarity: str,
    estimator: str,
    reduction: str,
    groups: torch.Tensor | None = None,
    alpha_neg: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(du, dv, dalpha, dtau_y, dtau_b, dalpha_neg)``; dalpha_neg is 0 (in alpha's dtype) without alpha_neg."""
    ub, vb, lab, msk, grp, params = _flat(u, v, labels, mask, groups, alpha, tau_y, tau_b, alpha_neg)
    gout = grad.reshape(-1).float()
    du, dv, dpar = _launch_small(ub, vb, lab, msk, grp, tolerance, params, c, similarity, estimator, reduction, gout)
    dpar = dpar.sum(0)
    neg = alpha if alpha_neg is None else alpha_neg
    return (
        du.reshape(u.shape).to(u.dtype),
        dv.reshape(v.shape).to(v.dtype),
        dpar[0].to(alpha.dtype, copy=True),
        dpar[1].to(tau_y.dtype, copy=True),
        dpar[2].to(tau_b.dtype, copy=True),
        dpar[3].to(neg.dtype, copy=True),
    )


@cs_mutual_information_backward_op.register_fake
def _(grad, u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups=None,
      alpha_neg=None):  # fmt: skip
    neg = alpha if alpha_neg is None else alpha_neg
    return tuple(torch.empty_like(t) for t in (u, v, alpha, tau_y, tau_b, neg))


def _setup_context(ctx, inputs, output) -> None:
    u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups, alpha_neg = inputs
    ctx.save_for_backward(u, v, labels, mask, alpha, tau_y, tau_b, groups, alpha_neg)
    ctx.options = (tolerance, c, similarity, estimator, reduction)


def _backward(ctx, grad):
    u, v, labels, mask, alpha, tau_y, tau_b, groups, alpha_neg = ctx.saved_tensors
    tolerance, c, similarity, estimator, reduction = ctx.options
    du, dv, dalpha, dtau_y, dtau_b, dalpha_neg = cs_mutual_information_backward_op(
        grad, u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups, alpha_neg
    )
    if similarity == "content":  # the graphs are not used: no gradient, as in the reference
        dtau_y = dtau_b = None
    if alpha_neg is None:
        dalpha_neg = None
    return du, dv, None, None, None, dalpha, dtau_y, dtau_b, None, None, None, None, None, dalpha_neg


cs_mutual_information_op.register_autograd(_backward, setup_context=_setup_context)


def _scalar_tensor(value, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.tensor(float(value), dtype=torch.float32, device=like.device)


def _tiled(u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups, alpha_neg):
    """Large-N regime: tiled multi-program Triton ops chained under autograd.

    ``Sc`` by the tiled cosine kernel; each graph ``E = softmax_rows(tau xn xnᵀ)`` by one fused kernel from
    the rows, normalised in registers (online softmax, the Gram matrix never written, E recomputed in the backward from
    per-row statistics); the RWR solve (product form, W saved for the backward) and the symmetric
    cross-entropy as tiled kernels; ``M = alpha (Sc + Ss)`` (ms: ``M = Sc + Ss``, alpha and alpha_neg go to the
    loss as w₊, w₋); the masked loss by the tiled cross_sample_mi kernel, which builds Ω and the groups from the
    labels tile by tile (no N×N mask is materialised).
    """

    from csad_kernels.triton.cosine_similarity import cosine_similarity
    from csad_kernels.triton.cross_sample_mi import cross_sample_mi_op
    from csad_kernels.triton.rwr import rwr
    from csad_kernels.triton.softmax_adjacency import gram_softmax
    from csad_kernels.triton.symmetric_cross_entropy import symmetric_cross_entropy

    uc, vc = u.float(), v.float()
    scores = None
    if similarity != "structural":
        scores = cosine_similarity(uc, vc)
    if similarity != "content":
        # both graphs in one launch per stage: x = [u; v], one tau each; rows normalised in the kernels
        r_y, r_b = rwr(gram_softmax(torch.stack([uc, vc]), torch.stack([tau_y.float(), tau_b.float()])), c).unbind(0)
        structural = symmetric_cross_entropy(r_y, r_b)
        scores = structural if scores is None else scores + structural
    if estimator == "ms":  # the unscaled similarity; alpha, alpha_neg are the loss's w₊, w₋
        out = cross_sample_mi_op(scores, labels, mask, tolerance, estimator, reduction, groups, alpha, alpha_neg)
        return out[0].to(u.dtype)
    m = alpha.float() * scores
    return cross_sample_mi_op(m, labels, mask, tolerance, estimator, reduction, groups)[0].to(u.dtype)


def cs_mutual_information(
    u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups=None, alpha_neg=None
):
    """Triton estimator; the signature of the registered kernels (see csad_kernels.api).

    N <= small_n_limit(): the fused one-program-per-problem kernel where it fits one block (small_path_fits), else
    the tiled ops. ms: ``alpha_neg`` None means the same tensor as ``alpha`` (both scales then add their gradients
    to it).
    """
    alpha = _scalar_tensor(alpha, u)
    if estimator == "ms":
        alpha_neg = alpha if alpha_neg is None else _scalar_tensor(alpha_neg, u)
    n, d = u.shape[-2:]
    if n > small_n_limit() or not small_path_fits(n, d, similarity):
        return _tiled(
            u, v, labels, mask, int(tolerance), alpha, _scalar_tensor(tau_y, u),
            _scalar_tensor(tau_b, u), float(c), similarity, estimator, reduction, groups, alpha_neg,
        )  # fmt: skip
    return cs_mutual_information_op(
        u,
        v,
        labels,
        mask,
        int(tolerance),
        alpha,
        _scalar_tensor(tau_y, u),
        _scalar_tensor(tau_b, u),
        float(c),
        similarity,
        estimator,
        reduction,
        groups,
        alpha_neg,
    )
