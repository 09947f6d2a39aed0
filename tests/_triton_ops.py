"""Shared checks of the single Triton ops against the float64 reference (used by test_triton_<op>.py)."""

import pytest
import torch
from _helpers import rel_err

pytest.importorskip("triton")
import csad_kernels as ck  # noqa: E402
import csad_kernels.triton  # noqa: E402,F401  (registers the Triton kernels)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-4
SKIP = ck.unavailable_reason("triton")


def check_op(fn_name, inputs64, extra=(), floor=1e-300, seed=0):
    """Value and gradients of every tensor input, float32 Triton vs float64 reference."""
    fn = getattr(ck, fn_name)
    x64 = [t.clone().requires_grad_() for t in inputs64]
    expected = fn(*x64, *extra, backend="reference")
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    eg = torch.autograd.grad(expected, x64, g)
    x32 = [t.detach().to(DEVICE, torch.float32).requires_grad_() for t in inputs64]
    out = fn(*x32, *extra, backend="triton")
    assert out.dtype == torch.float32 and out.shape == expected.shape
    og = torch.autograd.grad(out, x32, g.to(DEVICE, torch.float32))
    assert rel_err(out.cpu(), expected) <= TOL
    for got, want in zip(og, eg, strict=True):
        assert rel_err(got.cpu(), want, floor=floor) <= TOL
