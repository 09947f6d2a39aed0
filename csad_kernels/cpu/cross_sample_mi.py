"""``csad::cross_sample_mi``: fake kernel and autograd of the C++ masked loss (Ω from labels in the kernel)."""

from __future__ import annotations

import torch

from csad_kernels._dispatch import register_kernel


@torch.library.register_fake("csad::cross_sample_mi")
def _forward_fake(m, labels, mask, tolerance, estimator, reduction):
    batch = m.shape[:-2]
    problems = 1
    for size in batch:
        problems *= size
    return m.new_empty(batch), m.new_empty((problems, 4), dtype=torch.float64)


@torch.library.register_fake("csad::cross_sample_mi_backward")
def _backward_fake(grad, m, stats, labels, mask, tolerance, estimator):
    return torch.empty_like(m)


def _setup_context(ctx, inputs, output) -> None:
    m, labels, mask, tolerance, estimator, _ = inputs
    ctx.save_for_backward(m, output[1], labels, mask)
    ctx.options = (tolerance, estimator)


def _backward(ctx, grad, _grad_stats):
    m, stats, labels, mask = ctx.saved_tensors
    grad_m = torch.ops.csad.cross_sample_mi_backward(grad, m, stats, labels, mask, *ctx.options)
    return grad_m, None, None, None, None, None


torch.library.register_autograd("csad::cross_sample_mi", _backward, setup_context=_setup_context)


def cross_sample_mi(m, labels, mask, tolerance, estimator, reduction):
    """Fused CPU estimator loss from pair scores; arguments as the public op after validation."""
    return torch.ops.csad.cross_sample_mi(m, labels, mask, tolerance, estimator, reduction)[0]


register_kernel("cross_sample_mi", "cpu", cross_sample_mi)
