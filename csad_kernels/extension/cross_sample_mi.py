"""``csad::cross_sample_mi``: fake kernel and autograd of the C++ masked loss (Ω and groups built in the kernel)."""

from __future__ import annotations

import torch

from csad_kernels.extension._scalars import as_scalar_tensor

STATS = 8  # numbers per problem handed from the forward to the backward (csrc/shared.h, kStats)


@torch.library.register_fake("csad::cross_sample_mi")
def _forward_fake(m, labels, mask, tolerance, estimator, reduction, groups=None, w_pos=None, w_neg=None):
    batch = m.shape[:-2]
    problems = 1
    for size in batch:
        problems *= size
    return m.new_empty(batch), m.new_empty((problems, STATS), dtype=torch.float64)


@torch.library.register_fake("csad::cross_sample_mi_backward")
def _backward_fake(grad, m, stats, labels, mask, tolerance, estimator, groups=None, w_pos=None, w_neg=None):
    scale_grads = (torch.empty_like(w) if w is not None else m.new_empty(()) for w in (w_pos, w_neg))
    return torch.empty_like(m), *scale_grads


def _setup_context(ctx, inputs, output) -> None:
    m, labels, mask, tolerance, estimator, _, groups, w_pos, w_neg = inputs
    ctx.save_for_backward(m, output[1], labels, mask, groups, w_pos, w_neg)
    ctx.options = (tolerance, estimator)


def _backward(ctx, grad, _grad_stats):
    m, stats, labels, mask, groups, w_pos, w_neg = ctx.saved_tensors
    tolerance, estimator = ctx.options
    grad_m, grad_pos, grad_neg = torch.ops.csad.cross_sample_mi_backward(
        grad, m, stats, labels, mask, tolerance, estimator, groups, w_pos, w_neg
    )
    return (
        grad_m,
        *(None,) * 6,
        grad_pos if w_pos is not None else None,
        grad_neg if w_neg is not None else None,
    )


torch.library.register_autograd("csad::cross_sample_mi", _backward, setup_context=_setup_context)


def cross_sample_mi(
    m: torch.Tensor,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    tolerance: int,
    estimator: str,
    reduction: str,
    groups: torch.Tensor | None = None,
    w_pos: torch.Tensor | float = 1.0,
    w_neg: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Fused estimator loss from pair scores (the extension's CPU or CUDA kernel); arguments as the public op
    after validation.

    ``w_pos``/``w_neg`` (numbers or 0-d tensors) are the scales of ``estimator="ms"``; "cs" and "jsd" ignore them.
    """
    if estimator == "ms":
        w_pos = as_scalar_tensor(w_pos, m)
        w_neg = None if w_neg is None else as_scalar_tensor(w_neg, m)
    else:
        w_pos = w_neg = None
    return torch.ops.csad.cross_sample_mi(m, labels, mask, tolerance, estimator, reduction, groups, w_pos, w_neg)[0]
