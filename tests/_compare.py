"""The one definition of "a backend matches the reference", and the backend × dtype grid of the op tests.

The rule (flash-attention's): run the op three times, with the same inputs and the same upstream gradient,

- ``exact``: the reference (``csad_kernels/reference.py``) in float64 on the CPU;
- ``plain``: the reference in the backend's dtype on the backend's device (what plain PyTorch achieves there);
- ``got``:   the backend in its dtype.

For the value and for the gradient of every differentiable input,

    ‖got − exact‖ <= 2 ‖plain − exact‖ + ROUNDINGS[dtype] eps(dtype) ‖exact‖ + ATOL[dtype]   (Frobenius norms)

A backend may be at most twice as far from the truth as plain PyTorch in the same precision. The rest is a
floor:

- ``ATOL`` (1e-6 in float32, 1e-10 in float64), for results that are exactly zero in exact arithmetic (the
  gradients of a cosine similarity of 1-D vectors, a side of the estimator that is empty), where the plain run
  can happen to be exact too, and the float64 "exact" value is itself round-off;
- ``ROUNDINGS`` roundings of the result: 8 in float32; 64 in float64, where ``plain`` *is* ``exact`` (there is
  nothing more precise to compare with), so the floor is the whole tolerance and has to cover a fused kernel
  that sums its up to 3·10⁶ terms in another order than torch.sum (35 eps measured, at N = 1024).

A gradient that the reference leaves None (an input that does not influence the result) counts as zero.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
import torch

import csad_kernels as ck
import csad_kernels.cuda  # noqa: F401  (registers backend "cuda" when the extension has CUDA kernels)

ATOL = {torch.float32: 1e-6, torch.float64: 1e-10}
ROUNDINGS = {torch.float32: 8, torch.float64: 64}
FUSED_BACKENDS = ("cpu", "triton", "cuda")
# The dtypes in which each backend computes, from the backends' docstrings:
# - reference: any floating dtype, in that dtype (plain PyTorch);
# - cpu (csad_kernels/extension): float32 and float64 in their own precision; float16/bfloat16 upcast to float32;
# - cuda (csad_kernels/cuda/__init__.py): float32 and float64 in their own precision; float16/bfloat16 upcast;
# - triton (csad_kernels/triton/__init__.py): float32 only; float64 inputs are computed in float32, float16 and
#   bfloat16 upcast to float32.
DTYPES = {
    "reference": (torch.float32, torch.float64),
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64),
    "triton": (torch.float32,),
}


def device_of(backend: str) -> str:
    """The device whose tensors ``backend`` runs on here (Triton: the GPU, else its CPU interpreter)."""
    if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def _skip_unavailable(backend: str) -> list:
    reason = ck.unavailable_reason(backend)
    return [pytest.mark.skip(reason=f"backend {backend!r} is unavailable: {reason}")] if reason else []


def backends(*, fused_only: bool = False) -> list:
    """Every backend as a pytest parameter, those that cannot run here skipped with their reason."""
    names = FUSED_BACKENDS if fused_only else ("reference", *FUSED_BACKENDS)
    return [pytest.param(b, id=b, marks=_skip_unavailable(b)) for b in names]


def backend_dtypes(*, fused_only: bool = True, dtypes=(torch.float32, torch.float64)) -> list:
    """``(backend, dtype)`` pytest parameters: every backend × every dtype it computes in (of ``dtypes``).

    ``fused_only`` leaves the reference out: compared with itself, it cannot fail the rule.
    """
    names = FUSED_BACKENDS if fused_only else ("reference", *FUSED_BACKENDS)
    return [
        pytest.param(b, dtype, id=f"{b}-{str(dtype).removeprefix('torch.')}", marks=_skip_unavailable(b))
        for b in names
        for dtype in DTYPES[b]
        if dtype in dtypes
    ]


def assert_close_to_exact(got, exact, plain, dtype, name: str = "value") -> None:
    """The rule of this module for one tensor of a backend computing in ``dtype`` (None counts as zero)."""
    got, exact, plain = (torch.zeros(()) if t is None else t.detach().cpu().double() for t in (got, exact, plain))
    error = float((got - exact).norm())
    floor = ROUNDINGS[dtype] * torch.finfo(dtype).eps * float(exact.norm()) + ATOL[dtype]
    allowed = 2 * float((plain - exact).norm()) + floor
    assert error <= allowed, f"{name}: error {error:.3g} > allowed {allowed:.3g} (|exact| = {float(exact.norm()):.3g})"


def _run(fn: Callable, inputs: dict[str, torch.Tensor], backend: str, device: str, dtype, seed: int):
    leaves = [t.detach().to(device, dtype).requires_grad_() for t in inputs.values()]
    out = fn(*leaves, backend=backend)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    grads = torch.autograd.grad(out, leaves, upstream.to(device, out.dtype), allow_unused=True)
    return out, list(grads)


def assert_matches_reference(fn: Callable, inputs64: dict[str, torch.Tensor], backend: str, dtype, seed: int = 0):
    """``fn(*inputs64.values(), backend=...)`` on ``backend`` in ``dtype`` against the float64 reference: the
    value and the gradient of every input in ``inputs64`` (by name), under the rule of this module, with one
    random upstream gradient (its signs make the per-problem errors of batched outputs, and the gradients of
    scalars that sum over problems, cancel less than an all-ones gradient would).

    ``fn`` closes over the non-differentiable arguments (labels, masks, options); the tensors it receives are
    leaves on the backend's device. Returns the backend's value and gradients, on the CPU.
    """
    device = device_of(backend)
    exact, exact_grads = _run(fn, inputs64, "reference", "cpu", torch.float64, seed)
    plain, plain_grads = _run(fn, inputs64, "reference", device, dtype, seed)
    got, got_grads = _run(fn, inputs64, backend, device, dtype, seed)
    assert got.dtype == dtype and got.shape == exact.shape and got.device.type == device
    assert torch.isfinite(got).all()
    assert_close_to_exact(got, exact, plain, dtype)
    for name, g, e, p in zip(inputs64, got_grads, exact_grads, plain_grads, strict=True):
        assert g is None or torch.isfinite(g).all(), f"d{name} is not finite"
        assert_close_to_exact(g, e, p, dtype, name=f"d{name}")
    return got.detach().cpu(), [None if g is None else g.cpu() for g in got_grads]


def interpreted(backend: str) -> bool:
    """Whether ``backend`` runs in Triton's CPU interpreter here (slow: N <= 256, and fewer cases)."""
    return backend == "triton" and device_of(backend) == "cpu"


def skip_unless_compiled(backend: str, why: str = "a GPU-sized case") -> None:
    """Skips a case that the Triton interpreter is too slow for; every other backend runs it."""
    if interpreted(backend):
        pytest.skip(f"{why}: too slow for the Triton interpreter (run on a GPU)")


def on(device: str, spec: dict) -> dict:
    """The tensors of a keyword-argument dict (labels, masks, groups) moved to ``device``."""
    return {k: x.to(device) if isinstance(x, torch.Tensor) else x for k, x in spec.items()}


def backends_computing_in(dtype) -> list:
    """The backends (pytest parameters) that compute in ``dtype`` itself: for gradcheck, float64."""
    return [p for p in backends() if dtype in DTYPES[p.values[0]]]


def custom_op(backend: str, op: str, cpp_name: str | None = None):
    """The torch.library custom op behind ``backend``'s kernel of ``op``, for ``torch.library.opcheck``."""
    if backend in ("cpu", "cuda"):
        return getattr(torch.ops.csad, cpp_name or op).default
    if backend == "triton":
        return getattr(importlib.import_module(f"csad_kernels.triton.{op}"), f"{op}_op")
    raise ValueError(f"no custom-op lookup for backend {backend!r}: add one here (CONTRIBUTING.md, a backend)")


def most_precise_dtype(backend: str):
    """The most precise dtype ``backend`` computes in: float64, or float32 for Triton."""
    return DTYPES[backend][-1]


def skip_unless_on_gpu(backend: str) -> None:
    """Skips a large-N case everywhere but on a GPU (the CPU backends and the interpreter are too slow for it)."""
    if device_of(backend) == "cpu":
        pytest.skip("large N needs a GPU")
