"""``csad::symmetric_cross_entropy``: fake kernel, autograd and wrapper of the C++ op (csrc/cpu/, csrc/cuda/
symmetric_cross_entropy.cpp)."""

from __future__ import annotations

import torch


@torch.library.register_fake("csad::symmetric_cross_entropy")
def _forward_fake(p, q):
    return p.new_empty((*p.shape[:-1], q.shape[-2]))


@torch.library.register_fake("csad::symmetric_cross_entropy_backward")
def _backward_fake(grad, p, q, output_mask):
    return (torch.empty_like(p) if output_mask[0] else None, torch.empty_like(q) if output_mask[1] else None)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)  # each gradient reads both inputs


def _backward(ctx, grad):
    p, q = ctx.saved_tensors
    return torch.ops.csad.symmetric_cross_entropy_backward(grad, p, q, list(ctx.needs_input_grad))


torch.library.register_autograd("csad::symmetric_cross_entropy", _backward, setup_context=_setup_context)


def symmetric_cross_entropy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Fused inverse symmetric cross-entropy (the extension's CPU or CUDA kernel),
    ``(..., N, K), (..., M, K) -> (..., N, M)``."""
    return torch.ops.csad.symmetric_cross_entropy(p, q)
