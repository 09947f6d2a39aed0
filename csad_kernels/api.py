"""Public functions: validate the inputs (DESIGN.md §8), then run the chosen backend's kernel.

Every function is differentiable in all its tensor inputs and batched over leading dims ``...``.
``backend`` is ``"auto"`` (default; ``CSAD_BACKEND`` overrides it), ``"reference"``, ``"cpu"``,
``"cuda"`` or ``"triton"``.
"""

from __future__ import annotations

import torch

from csad_kernels import _validation as check
from csad_kernels import reference
from csad_kernels._dispatch import OPS, register_kernel, resolve


def _omega(labels, mask, tolerance):
    return mask if mask is not None else reference.pair_mask(labels, tolerance)


def _counted(groups):
    return None if groups is None else reference.same_group(groups)


def _reference_cross_sample_mi(m, labels, mask, tolerance, estimator, reduction, groups=None, w_pos=1.0, w_neg=None):
    omega = _omega(labels, mask, tolerance)
    return reference.cross_sample_mi(m, omega, estimator, reduction, _counted(groups), w_pos, w_neg)


def _reference_cs_mutual_information(
    u,
    v,
    labels,
    mask,
    tolerance,
    alpha,
    tau_y,
    tau_b,
    c,
    similarity,
    estimator,
    reduction,
    groups=None,
    alpha_neg=None,
):
    omega = _omega(labels, mask, tolerance)
    return reference.cs_mutual_information(
        u, v, omega, alpha, tau_y, tau_b, c, similarity, estimator, reduction, _counted(groups), alpha_neg
    )


# the reference kernel of each op: reference.<op>, but for the two that take labels/mask/tolerance and groups here
_REFERENCE_WRAPPERS = {
    "cross_sample_mi": _reference_cross_sample_mi,
    "cs_mutual_information": _reference_cs_mutual_information,
}
for _op in OPS:
    register_kernel(_op, "reference", _REFERENCE_WRAPPERS.get(_op) or getattr(reference, _op))


def _rows_pair(name_a: str, a: object, name_b: str, b: object) -> torch.device:
    """Checks two ``(..., N, d)`` / ``(..., M, d)`` operands; returns their device."""
    check.floating_tensor(name_a, a, min_dim=2)
    check.floating_tensor(name_b, b, min_dim=2)
    check.same_dtype(**{name_a: a, name_b: b})
    device = check.same_device(**{name_a: a, name_b: b})
    check.leading_dims_match(name_a, a.shape[:-2], name_b, b.shape[:-2])
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_a} (..., N, d) and {name_b} (..., M, d) must share the feature dim d, "
            f"got {a.shape[-1]} and {b.shape[-1]}"
        )
    return device


def _square(name: str, t: object) -> torch.device:
    check.floating_tensor(name, t, min_dim=2)
    if t.shape[-1] != t.shape[-2]:
        raise ValueError(f"{name} must be square (..., N, N), got shape {tuple(t.shape)}")
    return t.device


def cosine_similarity(x: torch.Tensor, y: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Pairwise cosine similarity of rows, ``(..., N, d), (..., M, d) -> (..., N, M)``.

    Rows are normalised like ``F.normalize`` (``x / max(|x|, 1e-12)``).
    """
    device = _rows_pair("x", x, "y", y)
    chosen, kernel = resolve("cosine_similarity", backend, device)
    if check.values_checkable(chosen, x, y):
        check.finite("x", x)
        check.finite("y", y)
    return kernel(x, y)


def softmax_adjacency(s: torch.Tensor, tau: torch.Tensor | float, *, backend: str = "auto") -> torch.Tensor:
    """Row-stochastic graph ``softmax_rows(tau * s)``, ``(..., N, N) -> (..., N, N)`` (Eq. 5).

    ``tau`` is a number or a 0-d tensor (learnable).
    """
    device = _square("s", s)
    tau = check.scalar("tau", tau, device)
    chosen, kernel = resolve("softmax_adjacency", backend, device)
    if check.values_checkable(chosen, s):
        check.finite("s", s)
        if isinstance(tau, torch.Tensor):
            check.finite("tau", tau)
    return kernel(s, tau)


def rwr(e: torch.Tensor, c: float = 0.5, *, backend: str = "auto") -> torch.Tensor:
    """Random Walk with Restart, ``(..., N, N) -> (..., N, N)`` (Eq. 6-7).

    ``e`` must be row-stochastic; ``c`` in (0, 1) is the probability to follow an edge. Row ``i``
    of ``(1 - c)(I - c e)^-1``, renormalised to sum 1, is the walk that restarts at node ``i``.
    """
    device = _square("e", e)
    c = check.restart_probability(c)
    chosen, kernel = resolve("rwr", backend, device)
    if check.values_checkable(chosen, e):
        check.finite("e", e)
        check.row_stochastic("e", e)
    return kernel(e, c)


def symmetric_cross_entropy(p: torch.Tensor, q: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Inverse symmetric cross-entropy of probability rows, ``(..., N, K), (..., M, K) -> (..., N, M)``.

    ``S[i, j] = 1/2 (p_i · log q_j + q_j · log p_i)`` (Eq. 8); entries that are 0 count as the
    dtype's smallest normal number inside the log.
    """
    device = _rows_pair("p", p, "q", q)
    chosen, kernel = resolve("symmetric_cross_entropy", backend, device)
    if check.values_checkable(chosen, p, q):
        for name, t in (("p", p), ("q", q)):
            check.finite(name, t)
            check.non_negative(name, t)
    return kernel(p, q)


def cross_sample_mi(
    m: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    tolerance: int = 0,
    estimator: str = "cs",
    reduction: str | None = None,
    groups: torch.Tensor | None = None,
    w_pos: torch.Tensor | float = 1.0,
    w_neg: torch.Tensor | float | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Cross-sample MI lower bound from pair scores ``m (..., N, N)`` -> ``(...)``: the last step of
    :func:`cs_mutual_information`, for a critic of your own.

    Positive pairs Ω come from ``bias`` labels ``(..., N)`` / ``(..., N, K)`` (``(i, j) ∈ Ω`` iff
    every label differs by at most ``tolerance``) or from a boolean ``mask (..., N, N)``.
    ``estimator="cs"`` is Eq. 2, ``"jsd"`` Eq. 1 (``m`` carries alpha; ``w_pos``/``w_neg`` stay at
    their defaults); ``"ms"`` is the authors' multi-similarity form with ``m`` the unscaled similarity
    and scales ``w_pos``, ``w_neg`` > 0 (None: ``w_pos``). ``reduction`` None means "mean" for cs/jsd
    and "sum" for ms; "mean"/"sum" replace each mean/Σ. ``groups (..., N)`` integer labels: only pairs
    within one group count, on both sides. A side of the pairs that is empty contributes 0.
    """
    device = _square("m", m)
    check.at_least_two_samples("m", m.shape[-1])
    check.estimator_options(estimator, reduction)
    names = ("w_pos", "w_neg")
    w_pos, w_neg = check.ms_scales(estimator, names, w_pos, w_neg, (1.0, None), device)
    labels, mask, tolerance = check.pairs(m.shape[:-2], m.shape[-1], bias, mask, tolerance, device)
    groups = check.groups_labels(groups, m.shape[:-2], m.shape[-1], device)
    reduction = reference.default_reduction(estimator, reduction)
    chosen, kernel = resolve("cross_sample_mi", backend, device)
    if check.values_checkable(chosen, m):
        check.finite("m", m)
        if labels is not None:
            check.label_range("bias", labels)
        check.positive_scales(names, w_pos, w_neg)
    return kernel(m, labels, mask, tolerance, estimator, reduction, groups, w_pos, w_neg)


def cs_mutual_information(
    u: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    *,
    alpha: torch.Tensor | float,
    tau_y: torch.Tensor | float,
    tau_b: torch.Tensor | float,
    c: float = 0.5,
    tolerance: int = 0,
    groups: torch.Tensor | None = None,
    alpha_neg: torch.Tensor | float | None = None,
    similarity: str = "joint",
    estimator: str = "cs",
    reduction: str | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """The fused cross-sample MI estimator ``I(u, v)``, ``(..., N, d), (..., N, d) -> (...)``.

    Its ``cs`` means cross-sample (DESIGN.md §2, naming rule), not the Eq. 2 estimator: it computes every estimator
    kind, ``estimator="cs"`` (Eq. 2, the default), ``"jsd"`` or ``"ms"``.

    ``u`` are target-side embeddings ``My(h^y)``, ``v`` bias-side ``Mb(h^b)``. The critic is
    ``alpha * (content + structural)`` similarity (``similarity="joint"``, Eq. 9), or one of them
    (``"content"``, Eq. 3; ``"structural"``, Eq. 8); ``tau_y``/``tau_b`` scale the graphs' softmax,
    ``c`` is the RWR walk probability. With ``estimator="ms"`` the similarity is not scaled:
    ``alpha`` is w₊ and ``alpha_neg`` w₋ (None: ``alpha``), both > 0; ``alpha_neg`` must stay None
    for cs/jsd. Pairs, ``groups`` and ``estimator``/``reduction`` as in :func:`cross_sample_mi`. The
    estimator network maximises the result; the debiased encoder minimises it.
    """
    device = _rows_pair("u", u, "v", v)
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same shape (..., N, d), got {tuple(u.shape)} and {tuple(v.shape)}")
    check.at_least_two_samples("u", u.shape[-2])
    check.similarity_option(similarity)
    check.estimator_options(estimator, reduction)
    c = check.restart_probability(c)
    scalars = {
        name: check.scalar(name, value, device)
        for name, value in (("alpha", alpha), ("tau_y", tau_y), ("tau_b", tau_b))
    }
    names = ("alpha", "alpha_neg")
    if estimator == "ms":
        scalars["alpha"], alpha_neg = check.ms_scales(estimator, names, alpha, alpha_neg, (1.0, None), device)
    elif alpha_neg is not None:
        raise ValueError(f"alpha_neg applies to estimator='ms' only; leave it None for {estimator!r}")
    labels, mask, tolerance = check.pairs(u.shape[:-2], u.shape[-2], bias, mask, tolerance, device)
    groups = check.groups_labels(groups, u.shape[:-2], u.shape[-2], device)
    reduction = reference.default_reduction(estimator, reduction)
    chosen, kernel = resolve("cs_mutual_information", backend, device)
    if check.values_checkable(chosen, u, v):
        check.finite("u", u)
        check.finite("v", v)
        for name, value in scalars.items():
            if isinstance(value, torch.Tensor):
                check.finite(name, value)
        if labels is not None:
            check.label_range("bias", labels)
        if estimator == "ms":
            check.positive_scales(names, scalars["alpha"], alpha_neg)
    args = (u, v, labels, mask, tolerance, scalars["alpha"], scalars["tau_y"], scalars["tau_b"], c, similarity)
    return kernel(*args, estimator, reduction, groups, alpha_neg)
