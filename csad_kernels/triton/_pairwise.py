"""One registration for the Triton backend's row-pair ops ``f(x (..., N, k), y (..., M, k)) -> (..., N, M)``.

Cosine similarity and the inverse symmetric cross-entropy share everything but their kernels: the forward
launcher on float32 ``(B, N, k), (B, M, k)`` and a row-gradient launcher ``d/dx sum(G * f(x, y))`` that also
gives ``d/dy`` with the roles swapped and ``G`` read transposed (through strides, no copy). The backward
launches the row kernel only for the inputs that need a gradient (``ctx.needs_input_grad``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton

from csad_kernels.triton._common import dot_precision
from csad_kernels.triton.launch_settings import COMPILE_OPTIONS

PairForward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (rows (B, n, k), others (B, m, k), G (B, n, m) or (B, m, n) with transpose_g) -> d rows (B, n, k), float32
PairRowGradient = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


def register_pair_op(name: str, forward: PairForward, row_gradient: PairRowGradient) -> Callable[..., torch.Tensor]:
    """Register ``csad_triton::<name>`` and ``csad_triton::<name>_row_grad`` with autograd; returns the op.

    The op computes in float32 and returns x's dtype; each gradient has its input's dtype.
    """

    @torch.library.custom_op(f"csad_triton::{name}", mutates_args=())
    def op(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, k = x.shape[-2:]
        m = y.shape[-2]
        out = forward(x.reshape(-1, n, k).float(), y.reshape(-1, m, k).float())
        return out.reshape(*x.shape[:-2], n, m).to(x.dtype)

    @op.register_fake
    def _(x, y):
        return x.new_empty((*x.shape[:-1], y.shape[-2]))

    @torch.library.custom_op(f"csad_triton::{name}_row_grad", mutates_args=())
    def row_grad(grad: torch.Tensor, rows: torch.Tensor, others: torch.Tensor, transpose_g: bool) -> torch.Tensor:
        """``d/d rows``; ``grad`` is ``(..., n, m)``, or ``(..., m, n)`` when ``transpose_g`` (then read transposed)."""
        n, k = rows.shape[-2:]
        m = others.shape[-2]
        g = grad.reshape(-1, m, n) if transpose_g else grad.reshape(-1, n, m)
        d = row_gradient(rows.reshape(-1, n, k).float(), others.reshape(-1, m, k).float(), g.float(), transpose_g)
        return d.reshape(rows.shape).to(rows.dtype)

    @row_grad.register_fake
    def _(grad, rows, others, transpose_g):
        return torch.empty_like(rows)

    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, y = ctx.saved_tensors
        dx = row_grad(grad, x, y, False) if ctx.needs_input_grad[0] else None
        dy = row_grad(grad, y, x, True) if ctx.needs_input_grad[1] else None
        return dx, dy

    op.register_autograd(backward, setup_context=setup_context)
    return op


def launch_pair_forward(kernel, x: torch.Tensor, y: torch.Tensor, block_n: int, **meta) -> torch.Tensor:
    """``kernel`` on float32 ``(B, N, k)``, ``(B, M, k)`` -> ``(B, N, M)`` float32, one program per
    ``block_n x block_n`` output tile; ``meta`` holds the kernel's other constexprs."""
    bsz, n, k = x.shape
    m = y.shape[1]
    out = torch.empty((bsz, n, m), dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_n), bsz)
    kernel[grid](
        x, y, out, n, m, k, *x.stride(), *y.stride(), *out.stride(),
        BLOCK_N=block_n, BLOCK_M=block_n, PRECISION=dot_precision(), **meta, **COMPILE_OPTIONS,
    )  # fmt: skip
    return out


def launch_row_gradient(
    kernel, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, transpose_g: bool, block_n: int,
    column_blocks: tuple[int, ...] = (), **meta,
) -> torch.Tensor:  # fmt: skip
    """``kernel`` giving ``d/dx`` (float32 ``(B, N, k)``) from ``G`` (``(B, N, M)``, or ``(B, M, N)`` read
    transposed through its strides); the grid is ``(row blocks, *column_blocks, B)``."""
    bsz, n, k = x.shape
    m = y.shape[1]
    dx = torch.empty((bsz, n, k), dtype=torch.float32, device=x.device)
    sgb, sgn, sgm = g.stride()
    if transpose_g:
        sgn, sgm = sgm, sgn
    grid = (triton.cdiv(n, block_n), *column_blocks, bsz)
    kernel[grid](
        x, y, g, dx, n, m, k, *x.stride(), *y.stride(), sgb, sgn, sgm, *dx.stride(),
        BLOCK_N=block_n, BLOCK_M=block_n, PRECISION=dot_precision(), **meta, **COMPILE_OPTIONS,
    )  # fmt: skip
    return dx
