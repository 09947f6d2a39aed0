"""Triton row-stochastic adjacency ``E = softmax_rows(tau * S)``: kernels, launchers, autograd.

Forward: one program per (problem, block of rows), an online max/sum pass over column blocks and a
second pass that writes E. Backward: ``dZ = E (dE - rowsum(dE E))``, ``dS = tau dZ`` and per-program
partials of ``dtau = sum(dZ S) = sum(E dE (S - rowmean_E S))`` (summed by the launcher).
(The fused estimator builds its graphs from the embeddings in registers and never calls this op.)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

OP = "csad_triton::softmax_adjacency"
BLOCK_R = 16


def _block_c(n: int) -> int:
    return min(256, max(16, triton.next_power_of_2(n)))


@triton.jit
def _softmax_forward_kernel(
    s_ptr, tau_ptr, e_ptr, N, ssb, ssn, ssm, seb, sen, sem, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1)
    tau = tl.load(tau_ptr)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    run_max = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        s = tl.load(s_ptr + b * ssb + rows[:, None] * ssn + cols[None, :] * ssm, mask=mask, other=0.0)
        z = tl.where((cols < N)[None, :], tau * s, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=1))  # finite: every block holds a valid column
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(z - new_max[:, None]), axis=1)
        run_max = new_max
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        s = tl.load(s_ptr + b * ssb + rows[:, None] * ssn + cols[None, :] * ssm, mask=mask, other=0.0)
        e = tl.exp(tau * s - run_max[:, None]) / run_sum[:, None]
        tl.store(e_ptr + b * seb + rows[:, None] * sen + cols[None, :] * sem, e, mask=mask)


@triton.jit
def _softmax_backward_kernel(
    s_ptr, e_ptr, g_ptr, tau_ptr, ds_ptr, dtau_ptr, N,
    ssb, ssn, ssm, seb, sen, sem, sgb, sgn, sgm, sdb, sdn, sdm,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pr, b = tl.program_id(0), tl.program_id(1)
    tau = tl.load(tau_ptr)
    rows = pr * BLOCK_R + tl.arange(0, BLOCK_R)
    dot = tl.zeros((BLOCK_R,), dtype=tl.float32)
    mean_s = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        e = tl.load(e_ptr + b * seb + rows[:, None] * sen + cols[None, :] * sem, mask=mask, other=0.0)
        g = tl.load(g_ptr + b * sgb + rows[:, None] * sgn + cols[None, :] * sgm, mask=mask, other=0.0)
        s = tl.load(s_ptr + b * ssb + rows[:, None] * ssn + cols[None, :] * ssm, mask=mask, other=0.0)
        dot += tl.sum(e * g, axis=1)
        mean_s += tl.sum(e * s, axis=1)
    dtau = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < N)[None, :]
        e = tl.load(e_ptr + b * seb + rows[:, None] * sen + cols[None, :] * sem, mask=mask, other=0.0)
        g = tl.load(g_ptr + b * sgb + rows[:, None] * sgn + cols[None, :] * sgm, mask=mask, other=0.0)
        s = tl.load(s_ptr + b * ssb + rows[:, None] * ssn + cols[None, :] * ssm, mask=mask, other=0.0)
        dz = e * (g - dot[:, None])
        # sum_j dz_ij = 0, so dtau = sum E g (S - rowmean_E(S)): no cancellation of g against rowsum(E g)
        dtau += tl.sum(e * g * (s - mean_s[:, None]), axis=1)
        tl.store(ds_ptr + b * sdb + rows[:, None] * sdn + cols[None, :] * sdm, tau * dz, mask=mask)
    tl.store(dtau_ptr + b * tl.num_programs(0) + pr, tl.sum(dtau, axis=0))


@torch.library.custom_op(OP, mutates_args=())
def softmax_adjacency_op(s: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    n = s.shape[-1]
    sb = s.reshape(-1, n, n).float()
    e = torch.empty(sb.shape, dtype=torch.float32, device=s.device)
    _softmax_forward_kernel[(triton.cdiv(n, BLOCK_R), sb.shape[0])](
        sb, tau.reshape(1).float(), e, n, *sb.stride(), *e.stride(), BLOCK_R=BLOCK_R, BLOCK_C=_block_c(n)
    )
    return e.reshape(s.shape).to(s.dtype)


@softmax_adjacency_op.register_fake
def _(s, tau):
    return torch.empty_like(s)


@torch.library.custom_op(OP + "_backward", mutates_args=())
def softmax_adjacency_backward_op(
    grad: torch.Tensor, s: torch.Tensor, e: torch.Tensor, tau: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n = s.shape[-1]
    sb, eb, gb = (t.reshape(-1, n, n).float() for t in (s, e, grad))
    ds = torch.empty(sb.shape, dtype=torch.float32, device=s.device)
    programs = triton.cdiv(n, BLOCK_R)
    dtau = torch.empty((sb.shape[0], programs), dtype=torch.float32, device=s.device)
    _softmax_backward_kernel[(programs, sb.shape[0])](
        sb, eb, gb, tau.reshape(1).float(), ds, dtau, n,
        *sb.stride(), *eb.stride(), *gb.stride(), *ds.stride(), BLOCK_R=BLOCK_R, BLOCK_C=_block_c(n),
    )  # fmt: skip
    return ds.reshape(s.shape).to(s.dtype), dtau.sum().to(tau.dtype).reshape(tau.shape)


@softmax_adjacency_backward_op.register_fake
def _(grad, s, e, tau):
    return torch.empty_like(s), torch.empty_like(tau)


def _setup_context(ctx, inputs, output) -> None:
    s, tau = inputs
    ctx.save_for_backward(s, output, tau)


def _backward(ctx, grad):
    s, e, tau = ctx.saved_tensors
    return softmax_adjacency_backward_op(grad, s, e, tau)


softmax_adjacency_op.register_autograd(_backward, setup_context=_setup_context)


def softmax_adjacency(s: torch.Tensor, tau) -> torch.Tensor:
    """Triton ``softmax_rows(tau * s)``, ``(..., N, N) -> (..., N, N)``; ``tau`` a number or 0-d tensor."""
    if not isinstance(tau, torch.Tensor):
        tau = torch.tensor(float(tau), dtype=torch.float32, device=s.device)
    return softmax_adjacency_op(s, tau)
