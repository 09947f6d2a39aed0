"""``csad::rwr``: fake kernel and autograd of the C++ op (csrc/rwr.cpp)."""

from __future__ import annotations

import torch

from csad_kernels.reference import compute_dtype


@torch.library.register_fake("csad::rwr")
def _forward_fake(e, c):
    return torch.empty_like(e), e.new_empty(e.shape[:-1], dtype=compute_dtype(e.dtype))


@torch.library.register_fake("csad::rwr_backward")
def _backward_fake(grad, r, w_row_sums, c):
    return torch.empty_like(r)


def _setup_context(ctx, inputs, output) -> None:
    ctx.c = inputs[1]
    ctx.save_for_backward(*output)


def _backward(ctx, grad, _grad_row_sums):
    r, w_row_sums = ctx.saved_tensors
    return torch.ops.csad.rwr_backward(grad, r, w_row_sums, ctx.c), None


torch.library.register_autograd("csad::rwr", _backward, setup_context=_setup_context)


def rwr(e: torch.Tensor, c: float = 0.5) -> torch.Tensor:
    """Fused Random Walk with Restart, ``(..., N, N) -> (..., N, N)`` (the extension's CPU or CUDA kernel; LU
    inverse)."""
    return torch.ops.csad.rwr(e, c)[0]
