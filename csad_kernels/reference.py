"""Pure-PyTorch reference of the cross-sample mutual-information estimator.

This module *defines* what every backend computes (DESIGN.md §2). It does no input validation:
the public functions in :mod:`csad_kernels.api` validate and then dispatch here or to a fused
backend. Every function is batched over any leading dims ``...`` and runs in any floating dtype;
float16/bfloat16 inputs are computed in float32 and returned in their own dtype, as the fused
backends do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORM_EPS = 1e-12
ESTIMATORS = ("cs", "jsd", "ms")
REDUCTIONS = ("mean", "sum")
SIMILARITIES = ("joint", "content", "structural")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a computation runs in: float16/bfloat16 are upcast to float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _upcast(t: torch.Tensor) -> torch.Tensor:
    return t.to(compute_dtype(t.dtype))


def _as_scalar(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(like.dtype).reshape(())
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity, ``(..., N, d), (..., M, d) -> (..., N, M)``.

    Rows are normalised as ``F.normalize`` does: ``x / max(|x|, 1e-12)``.
    """
    xc, yc = _upcast(x), _upcast(y)
    out = F.normalize(xc, dim=-1, eps=NORM_EPS) @ F.normalize(yc, dim=-1, eps=NORM_EPS).mT
    return out.to(x.dtype)


def softmax_adjacency(s: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """Row-stochastic adjacency ``softmax_rows(tau * s)``, ``(..., N, N) -> (..., N, N)`` (Eq. 5)."""
    sc = _upcast(s)
    return torch.softmax(_as_scalar(tau, sc) * sc, dim=-1).to(s.dtype)


def rwr(e: torch.Tensor, c: float = 0.5) -> torch.Tensor:
    """Random Walk with Restart proximities, ``(..., N, N) -> (..., N, N)`` (Eq. 6-7).

    ``R = (1 - c) (I - c E)^-1`` with each row divided by its sum. Row ``i`` is the fixed point of
    ``r = c r E + (1 - c) e_i``: the stationary distribution of a walk that restarts at node ``i``.
    """
    ec = _upcast(e)
    n = ec.shape[-1]
    eye = torch.eye(n, dtype=ec.dtype, device=ec.device)
    w = torch.linalg.solve(eye - c * ec, eye)
    r = (1.0 - c) * w
    return (r / r.sum(dim=-1, keepdim=True)).to(e.dtype)


def safe_log(p: torch.Tensor) -> torch.Tensor:
    """``log p`` with entries below the smallest normal number of the dtype clamped to it.

    Probabilities that underflowed to 0 give a large finite negative log instead of ``-inf``
    (and ``0 * log 0 = 0`` instead of NaN).
    """
    return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


def symmetric_cross_entropy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Inverse symmetric cross-entropy, ``(..., N, K), (..., M, K) -> (..., N, M)`` (Eq. 8).

    ``S[i, j] = 1/2 (sum_k p[i,k] log q[j,k] + sum_k q[j,k] log p[i,k])``, one GEMM over
    ``[p | log p]`` and ``[log q | q]``.
    """
    pc, qc = _upcast(p), _upcast(q)
    left = torch.cat([pc, safe_log(pc)], dim=-1)
    right = torch.cat([safe_log(qc), qc], dim=-1)
    return (0.5 * (left @ right.mT)).to(p.dtype)


def pair_mask(labels: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Ω from bias labels with a label axis: ``(..., N, K)`` integers -> boolean ``(..., N, N)``.

    ``(i, j) ∈ Ω  ⇔  max_k |labels[i, k] - labels[j, k]| <= tolerance``. Ω contains the diagonal.
    Single labels ``(..., N)`` are passed as ``labels.unsqueeze(-1)``.
    """
    diff = (labels.unsqueeze(-2) - labels.unsqueeze(-3)).abs().amax(dim=-1)
    return diff <= tolerance


def default_reduction(estimator: str, reduction: str | None) -> str:
    """``reduction=None`` means ``"sum"`` for ms (the authors' code) and ``"mean"`` for cs and jsd (the paper)."""
    if reduction is not None:
        return reduction
    return "sum" if estimator == "ms" else "mean"


def same_group(groups: torch.Tensor) -> torch.Tensor:
    """Pairs that count under ``groups (..., N)`` integer labels: boolean ``(..., N, N)``, groups[i] == groups[j]."""
    return groups.unsqueeze(-1) == groups.unsqueeze(-2)


def _log1p_mean_exp(x: torch.Tensor, member: torch.Tensor, reduction: str) -> torch.Tensor:
    """``log(1 + mean_member e^x)`` over the last two dims as ``softplus(logsumexp(x) - log n)``.

    ``reduction="sum"`` drops the ``- log n``. An empty member set gives 0 with zero gradients.
    """
    count = member.sum(dim=(-2, -1))
    nonempty = count > 0
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    masked = torch.where(member, x, neg_inf)
    shift = masked.detach().amax(dim=(-2, -1))
    shift = torch.where(nonempty, shift, torch.zeros_like(shift))
    exps = torch.exp(torch.where(member, x - shift[..., None, None], neg_inf))
    total = exps.sum(dim=(-2, -1))
    lse = torch.log(torch.where(nonempty, total, torch.ones_like(total))) + shift
    if reduction == "mean":
        lse = lse - torch.log(count.clamp_min(1).to(x.dtype))
    return torch.where(nonempty, softplus(lse), torch.zeros_like(lse))


def _mean_softplus(x: torch.Tensor, member: torch.Tensor, reduction: str) -> torch.Tensor:
    """``mean_member softplus(x)`` over the last two dims (a sum for ``reduction="sum"``); 0 if empty."""
    total = torch.where(member, softplus(x), torch.zeros_like(x)).sum(dim=(-2, -1))
    if reduction == "mean":
        total = total / member.sum(dim=(-2, -1)).clamp_min(1).to(x.dtype)
    return total


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^x)`` without the linear cut-off of ``F.softplus``: exact for any finite x."""
    return torch.logaddexp(x, torch.zeros_like(x))


def cross_sample_mi(
    m: torch.Tensor,
    omega: torch.Tensor,
    estimator: str = "cs",
    reduction: str | None = None,
    counted: torch.Tensor | None = None,
    w_pos: torch.Tensor | float = 1.0,
    w_neg: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Cross-sample MI lower bound from pair scores, ``(..., N, N), (..., N, N) bool -> (...)``.

    ``cs`` (Eq. 2): ``-log(1 + mean_Ω e^{-M}) - log(1 + mean_¬Ω e^{M})``;
    ``jsd`` (Eq. 1): ``-mean_Ω softplus(-M) - mean_¬Ω softplus(M)``;
    ``ms`` (the authors' code): ``-(1/w₊) log(1 + Σ_Ω e^{-w₊ x}) - (1/w₋) log(1 + Σ_¬Ω e^{w₋ x})`` with
    ``x = m`` unscaled and ``w_neg=None`` meaning ``w_pos``. ``reduction`` (None: "sum" for ms, "mean"
    otherwise) replaces each Σ/mean. Only pairs in ``counted`` (default all; e.g. :func:`same_group`)
    enter either side. An empty side contributes 0.
    """
    mc = _upcast(m)
    reduction = default_reduction(estimator, reduction)
    inside, outside = omega, ~omega
    if counted is not None:
        inside, outside = inside & counted, outside & counted
    if estimator == "cs":
        value = -_log1p_mean_exp(-mc, inside, reduction) - _log1p_mean_exp(mc, outside, reduction)
    elif estimator == "jsd":
        value = -_mean_softplus(-mc, inside, reduction) - _mean_softplus(mc, outside, reduction)
    else:
        wp = _as_scalar(w_pos, mc)
        wn = wp if w_neg is None else _as_scalar(w_neg, mc)
        value = -_log1p_mean_exp(-wp * mc, inside, reduction) / wp - _log1p_mean_exp(wn * mc, outside, reduction) / wn
    return value.to(m.dtype)


def pair_scores(
    u: torch.Tensor,
    v: torch.Tensor,
    alpha: torch.Tensor | float,
    tau_y: torch.Tensor | float,
    tau_b: torch.Tensor | float,
    c: float = 0.5,
    similarity: str = "joint",
) -> torch.Tensor:
    """The critic ``M`` of Eq. 3, 8 or 9: ``(..., N, d), (..., N, d) -> (..., N, N)``."""
    uc, vc = _upcast(u), _upcast(v)
    scores = torch.zeros((), dtype=uc.dtype, device=uc.device)
    if similarity in ("joint", "content"):
        scores = scores + cosine_similarity(uc, vc)
    if similarity in ("joint", "structural"):
        r_y = rwr(softmax_adjacency(cosine_similarity(uc, uc), tau_y), c)
        r_b = rwr(softmax_adjacency(cosine_similarity(vc, vc), tau_b), c)
        scores = scores + symmetric_cross_entropy(r_y, r_b)
    return _as_scalar(alpha, uc) * scores


def cs_mutual_information(
    u: torch.Tensor,
    v: torch.Tensor,
    omega: torch.Tensor,
    alpha: torch.Tensor | float = 1.0,
    tau_y: torch.Tensor | float = 10.0,
    tau_b: torch.Tensor | float = 10.0,
    c: float = 0.5,
    similarity: str = "joint",
    estimator: str = "cs",
    reduction: str | None = None,
    counted: torch.Tensor | None = None,
    alpha_neg: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """The whole estimator: ``I(u, v)`` over pairs ``omega``, ``(..., N, d) x2 -> (...)``.

    cs/jsd score pairs with ``M = alpha * x``; ms uses the unscaled ``x`` with ``w₊ = alpha`` and
    ``w₋ = alpha_neg`` (None: ``alpha``). ``counted`` as in :func:`cross_sample_mi`.
    """
    if estimator == "ms":
        scores = pair_scores(u, v, 1.0, tau_y, tau_b, c, similarity)
        value = cross_sample_mi(scores, omega, estimator, reduction, counted, alpha, alpha_neg)
    else:
        scores = pair_scores(u, v, alpha, tau_y, tau_b, c, similarity)
        value = cross_sample_mi(scores, omega, estimator, reduction, counted)
    return value.to(u.dtype)
