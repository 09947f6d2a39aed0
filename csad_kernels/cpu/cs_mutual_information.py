"""``csad::cs_mutual_information``: the fused C++ estimator (csrc/cpu/cs_mutual_information.cpp).

The forward op returns the value and the tensors its backward reuses; autograd sees one op.
"""

from __future__ import annotations

import torch

from csad_kernels._dispatch import register_kernel
from csad_kernels.cpu._scalars import as_scalar_tensor
from csad_kernels.cpu.cross_sample_mi import STATS
from csad_kernels.reference import compute_dtype

_SAVED = 12  # un, vn, inv_u, inv_v, ey, eb, ry, rb, wsum_y, wsum_b, scores, stats


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
    return (
        u.new_empty(batch),
        *(torch.empty((b, n, d), **opts) for _ in range(2)),
        *(torch.empty((b, n), **opts) for _ in range(2)),
        *(torch.empty(graph_shape, **opts) for _ in range(4)),
        *(torch.empty(sums_shape, **opts) for _ in range(2)),
        torch.empty((b, n, n), **opts),
        torch.empty((b, STATS), dtype=torch.float64, device=u.device),
    )


@torch.library.register_fake("csad::cs_mutual_information_backward")
def _backward_fake(grad, *args):
    u, alpha, tau_y, tau_b = args[15:19]
    alpha_neg = args[24] if len(args) > 24 else None
    return (
        torch.empty_like(u),
        torch.empty_like(u),
        torch.empty_like(alpha),
        torch.empty_like(tau_y),
        torch.empty_like(tau_b),
        torch.empty_like(alpha_neg if alpha_neg is not None else alpha),
    )


def _setup_context(ctx, inputs, output) -> None:
    u, _, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups, alpha_neg = inputs
    ctx.save_for_backward(*output[1:], labels, mask, u, alpha, tau_y, tau_b, groups, alpha_neg)
    ctx.options = (tolerance, c, similarity, estimator, reduction)


def _backward(ctx, grad, *unused_grads):
    saved = ctx.saved_tensors
    tolerance, c, similarity, estimator, reduction = ctx.options
    labels, mask, u, alpha, tau_y, tau_b, groups, alpha_neg = saved[_SAVED:]
    grads = torch.ops.csad.cs_mutual_information_backward(
        grad,
        *saved[:_SAVED],
        labels,
        mask,
        tolerance,
        u,
        alpha,
        tau_y,
        tau_b,
        c,
        similarity,
        estimator,
        reduction,
        groups,
        alpha_neg,
    )
    du, dv, dalpha, dtau_y, dtau_b, dalpha_neg = grads
    if similarity == "content":  # the graphs' temperatures are unused: no gradient, as in the reference
        dtau_y = dtau_b = None
    return (
        du,
        dv,
        None,
        None,
        None,
        dalpha,
        dtau_y,
        dtau_b,
        None,
        None,
        None,
        None,
        None,
        dalpha_neg if alpha_neg is not None else None,
    )


torch.library.register_autograd("csad::cs_mutual_information_forward", _backward, setup_context=_setup_context)


def cs_mutual_information(
    u, v, labels, mask, tolerance, alpha, tau_y, tau_b, c, similarity, estimator, reduction, groups=None, alpha_neg=None
):
    """Fused CPU estimator; arguments as :func:`csad_kernels.cs_mutual_information` after validation.

    ``alpha_neg`` (ms only; None: ``alpha``) is w₋; ``groups (..., N)`` restricts both sides to same-group pairs.
    """
    outputs = torch.ops.csad.cs_mutual_information_forward(
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
    return outputs[0]


register_kernel("cs_mutual_information", "cpu", cs_mutual_information)
