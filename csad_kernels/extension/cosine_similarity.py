"""``csad::cosine_similarity``: fake kernel, autograd and wrapper of the fused C++ op (csrc/cosine_similarity.cpp)."""

from __future__ import annotations

import torch


@torch.library.register_fake("csad::cosine_similarity")
def _cosine_similarity_fake(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], y.shape[-2]))


@torch.library.register_fake("csad::cosine_similarity_backward")
def _cosine_similarity_backward_fake(
    grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor, output_mask: list[bool]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    return (torch.empty_like(x) if output_mask[0] else None, torch.empty_like(y) if output_mask[1] else None)


def _setup_context(ctx, inputs, output) -> None:
    x, y = inputs
    ctx.save_for_backward(x, y)  # each gradient reads both inputs


def _backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    x, y = ctx.saved_tensors
    return torch.ops.csad.cosine_similarity_backward(grad, x, y, list(ctx.needs_input_grad))


torch.library.register_autograd("csad::cosine_similarity", _backward, setup_context=_setup_context)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fused cosine similarity (the extension's CPU or CUDA kernel), ``(..., N, d), (..., M, d) -> (..., N, M)``."""
    return torch.ops.csad.cosine_similarity(x, y)
