"""``csad::softmax_adjacency``: fake kernel and autograd of the C++ op (csrc/softmax_adjacency.cpp)."""

from __future__ import annotations

import torch

from csad_kernels.extension._scalars import as_scalar_tensor


@torch.library.register_fake("csad::softmax_adjacency")
def _forward_fake(s, tau):
    return torch.empty_like(s)


@torch.library.register_fake("csad::softmax_adjacency_backward")
def _backward_fake(grad, e, s, tau, output_mask):
    return (torch.empty_like(e) if output_mask[0] else None, torch.empty_like(tau) if output_mask[1] else None)


def _setup_context(ctx, inputs, output) -> None:
    s, tau = inputs
    # ds reads e and tau; dtau reads s as well
    ctx.save_for_backward(output, s if ctx.needs_input_grad[1] else None, tau)


def _backward(ctx, grad):
    e, s, tau = ctx.saved_tensors
    return torch.ops.csad.softmax_adjacency_backward(grad, e, s, tau, list(ctx.needs_input_grad))


torch.library.register_autograd("csad::softmax_adjacency", _backward, setup_context=_setup_context)


def softmax_adjacency(s: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """Fused ``softmax_rows(tau * s)`` (the extension's CPU or CUDA kernel), ``(..., N, N) -> (..., N, N)``."""
    return torch.ops.csad.softmax_adjacency(s, as_scalar_tensor(tau, s))
