"""``csad::cs_mutual_information``: the fused C++ estimator (csrc/cs_mutual_information.cpp, CPU and CUDA).

The forward op returns the value and an :class:`EstimatorState`; autograd sees one op. The backward op
computes only the gradients whose inputs need them (``ctx.needs_input_grad``), and ``_setup_context``
saves only the state fields those gradients read.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from csad_kernels.extension._scalars import as_scalar_tensor
from csad_kernels.extension.cross_sample_mi import STATS
from csad_kernels.reference import compute_dtype


class EstimatorState(NamedTuple):
    """What the forward hands to the backward (csrc/cs_mutual_information.cpp ``EstimatorState``).

    ``B`` is the number of problems (the batch dims flattened), in the compute dtype unless noted. The
    graph fields are empty (shape ``(0,)``) for ``similarity="content"``. A field is None in the
    backward when no requested gradient reads it.
    """

    u_normalized: torch.Tensor | None  # (B, N, d) rows over their norms
    v_normalized: torch.Tensor | None
    u_inv_norms: torch.Tensor | None  # (B, N) 1 / max(|row|, eps)
    v_inv_norms: torch.Tensor | None
    e_y: torch.Tensor | None  # (B, N, N) softmax graphs
    e_b: torch.Tensor | None
    r_y: torch.Tensor | None  # (B, N, N) RWR matrices
    r_b: torch.Tensor | None
    w_row_sums_y: torch.Tensor | None  # (B, N) row sums of W = (I - cE)^-1
    w_row_sums_b: torch.Tensor | None
    scores: torch.Tensor | None  # (B, N, N) unscaled pair scores
    stats: torch.Tensor | None  # (B, STATS) float64


class RequestedGrads(NamedTuple):
    """Which of the differentiable inputs need a gradient, in the order of the backward's outputs."""

    u: bool
    v: bool
    alpha: bool
    tau_y: bool
    tau_b: bool
    alpha_neg: bool


# Positions of the differentiable inputs of cs_mutual_information_forward.
_U, _V, _ALPHA, _TAU_Y, _TAU_B, _ALPHA_NEG = 0, 1, 5, 6, 7, 13


def _requested_grads(ctx, similarity: str, estimator: str, alpha_neg: torch.Tensor | None) -> RequestedGrads:
    """The gradients to compute: those of inputs that need one and that the value depends on."""
    needs = ctx.needs_input_grad
    structural = similarity != "content"  # for "content" the temperatures get no gradient, as in the reference
    return RequestedGrads(
        u=needs[_U],
        v=needs[_V],
        alpha=needs[_ALPHA],
        tau_y=structural and needs[_TAU_Y],
        tau_b=structural and needs[_TAU_B],
        alpha_neg=estimator == "ms" and alpha_neg is not None and needs[_ALPHA_NEG],
    )


def kept_state(state: EstimatorState, wanted: RequestedGrads, similarity: str) -> EstimatorState:
    """``state`` with None for each field that none of the ``wanted`` gradients reads."""
    content = similarity != "structural"
    structural = similarity != "content"
    y_graph = structural and (wanted.u or wanted.tau_y)  # the backward through E_y, R_y
    b_graph = structural and (wanted.v or wanted.tau_b)
    keep = {
        "u_normalized": wanted.u or (content and wanted.v) or y_graph,
        "v_normalized": wanted.v or (content and wanted.u) or b_graph,
        "u_inv_norms": wanted.u,
        "v_inv_norms": wanted.v,
        "e_y": y_graph,
        "e_b": b_graph,
        "r_y": y_graph or b_graph,
        "r_b": y_graph or b_graph,
        "w_row_sums_y": y_graph,
        "w_row_sums_b": b_graph,
        "scores": True,
        "stats": True,
    }
    return EstimatorState(*(value if keep[name] else None for name, value in state._asdict().items()))


@torch.library.register_fake("csad::cs_mutual_information_forward")
def _forward_fake(
    u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups=None, alpha_neg=None
):
    *batch, n, d = u.shape
    b = 1
    for size in batch:
        b *= size
    opts = dict(dtype=compute_dtype(u.dtype), device=u.device)
    graph_shape = (b, n, n) if similarity != "content" else (0,)
    sums_shape = (b, n) if similarity != "content" else (0,)
    state = EstimatorState(
        *(torch.empty((b, n, d), **opts) for _ in range(2)),
        *(torch.empty((b, n), **opts) for _ in range(2)),
        *(torch.empty(graph_shape, **opts) for _ in range(4)),
        *(torch.empty(sums_shape, **opts) for _ in range(2)),
        torch.empty((b, n, n), **opts),
        torch.empty((b, STATS), dtype=torch.float64, device=u.device),
    )
    return u.new_empty(batch), list(state)


@torch.library.register_fake("csad::cs_mutual_information_backward")
def _backward_fake(
    grad, state, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, groups, alpha_neg, output_mask
):
    state = EstimatorState(*state)
    wanted = RequestedGrads(*output_mask)

    def feature_grad(normalized: torch.Tensor) -> torch.Tensor:
        return grad.new_empty((*grad.shape, *normalized.shape[-2:]))

    return (
        feature_grad(state.u_normalized) if wanted.u else None,
        feature_grad(state.v_normalized) if wanted.v else None,
        torch.empty_like(alpha) if wanted.alpha else None,
        torch.empty_like(tau_y) if wanted.tau_y else None,
        torch.empty_like(tau_b) if wanted.tau_b else None,
        torch.empty_like(alpha_neg) if wanted.alpha_neg else None,
    )


def _setup_context(ctx, inputs, output) -> None:
    _, _, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, _, groups, alpha_neg = inputs
    wanted = _requested_grads(ctx, similarity, estimator, alpha_neg)
    state = kept_state(EstimatorState(*output[1]), wanted, similarity)
    ctx.save_for_backward(*state, labels, mask, alpha, tau_y, tau_b, groups, alpha_neg)
    ctx.options = (tolerance, c, similarity, estimator)
    ctx.wanted = wanted


def _backward(ctx, grad, _grad_state):
    *state, labels, mask, alpha, tau_y, tau_b, groups, alpha_neg = ctx.saved_tensors
    tolerance, c, similarity, estimator = ctx.options
    grads = torch.ops.csad.cs_mutual_information_backward(
        grad,
        state,
        labels,
        mask,
        tolerance,
        alpha,
        tau_y,
        tau_b,
        c,
        similarity,
        estimator,
        groups,
        alpha_neg,
        list(ctx.wanted),
    )
    du, dv, dalpha, dtau_y, dtau_b, dalpha_neg = grads
    per_input = (du, dv, None, None, None, dalpha, dtau_y, dtau_b, None, None, None, None, None, dalpha_neg)
    # The dispatcher drops trailing arguments equal to their defaults (groups, alpha_neg = None), and
    # autograd wants one gradient per argument that reached the op.
    return per_input[: len(ctx.needs_input_grad)]


torch.library.register_autograd("csad::cs_mutual_information_forward", _backward, setup_context=_setup_context)


def cs_mutual_information(
    u: torch.Tensor,
    v: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    tolerance: int,
    alpha: torch.Tensor | float,
    tau_y: torch.Tensor | float,
    tau_b: torch.Tensor | float,
    c: float,
    similarity: str,
    estimator: str,
    reduction: str,
    groups: torch.Tensor | None = None,
    alpha_neg: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Fused estimator (the extension's CPU or CUDA kernels); arguments as
    :func:`csad_kernels.cs_mutual_information` after validation.

    ``alpha_neg`` (ms only; None: ``alpha``) is w₋; ``groups (..., N)`` restricts both sides to same-group pairs.
    """
    value, _ = torch.ops.csad.cs_mutual_information_forward(
        u,
        v,
        labels,
        mask,
        tolerance,
        as_scalar_tensor(alpha, u),
        as_scalar_tensor(tau_y, u),
        as_scalar_tensor(tau_b, u),
        c,
        similarity,
        estimator,
        reduction,
        groups,
        None if alpha_neg is None else as_scalar_tensor(alpha_neg, u),
    )
    return value
