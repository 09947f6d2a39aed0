"""Backends, their availability, and the choice of a kernel for each call.

A backend offers a kernel per op; ``"auto"`` picks, per op, the first available backend in the
order for the tensors' device that implements it (CUDA tensors: triton, cuda, reference; CPU
tensors: cpu, reference). The ``CSAD_BACKEND`` environment variable replaces ``"auto"``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import torch

from csad_kernels import _extension

BACKENDS = ("reference", "cpu", "cuda", "triton")
# The backends whose kernels a CUDA graph can capture (no host reads of tensor values, device-side launches).
CUDA_GRAPH_BACKENDS = ("cuda", "triton")
# The public ops, in DESIGN.md order: the one list every backend registers (each backend package imports it and a
# module per op; tests/test_backends.py checks each available backend registers exactly these). A new op is added
# here first (CONTRIBUTING.md).
OPS = (
    "cosine_similarity",
    "softmax_adjacency",
    "rwr",
    "symmetric_cross_entropy",
    "cross_sample_mi",
    "cs_mutual_information",
)
AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpu", "reference")}
ENV_VAR = "CSAD_BACKEND"

_KERNELS: dict[str, dict[str, Callable]] = {backend: {} for backend in BACKENDS}


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that cannot run here; the message says why and how to get it."""


def register_kernel(op: str, backend: str, fn: Callable) -> None:
    """Makes ``fn`` the implementation of public op ``op`` on ``backend``.

    Fused backends have first-order autograd formulas only: their kernels are wrapped so that
    differentiating one of their gradients again raises (see :func:`first_order_only`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    _KERNELS[backend][op] = fn if backend == "reference" else first_order_only(fn, op, backend)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on a kernel's differentiable inputs. Its backward, when run with grad mode on
    (``create_graph=True``), returns gradients that raise when they are differentiated again
    (``once_differentiable``'s ``DelayedError``); a plain ``create_graph=True`` first-order use works."""

    @staticmethod
    def forward(ctx, message: str, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.message = message
        # An input the kernel does not use (e.g. tau_y with similarity="content") gets no gradient: keep it
        # None, as the reference does, instead of autograd's default of materialising zeros for it.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*tensors)
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        if not torch.is_grad_enabled():
            return None, *grads
        # An exact 0 that depends on every input, so that any second-order path reaches the error.
        anchor = sum(t.reshape(-1)[:0].sum() for t in ctx.saved_tensors)
        defined = [i for i, g in enumerate(grads) if g is not None]
        if not defined:
            return None, *grads
        aliases = [grads[i].detach() + anchor for i in defined]
        raising = torch._C._functions.DelayedError(ctx.message, len(aliases))(*aliases)
        raising = (raising,) if isinstance(raising, torch.Tensor) else raising
        out: list[torch.Tensor | None] = list(grads)
        for i, g in zip(defined, raising, strict=True):
            out[i] = g
        return None, *out


def first_order_only(fn: Callable, op: str, backend: str) -> Callable:
    """``fn`` with each of its tensor inputs that requires grad passed through :class:`_FirstOrderOnly`."""
    message = (
        f"double backward (differentiating a gradient again) is not supported by the {backend!r} backend's "
        f"{op}; use backend='reference' for higher-order gradients"
    )

    def guarded(*args):
        tracked = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
        if tracked and torch.is_grad_enabled():
            args = list(args)
            for i, alias in zip(tracked, _FirstOrderOnly.apply(message, *(args[i] for i in tracked)), strict=True):
                args[i] = alias
        return fn(*args)

    guarded.__name__ = getattr(fn, "__name__", op)
    guarded.__doc__ = fn.__doc__
    return guarded


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _device_types(backend: str) -> tuple[str, ...]:
    if backend == "reference":
        return ("cpu", "cuda")
    if backend == "triton":
        return ("cuda", "cpu") if _triton_interpreted() else ("cuda",)
    return (backend,)


def unavailable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run on this machine, or None if it can."""
    if backend == "reference":
        return None
    if backend in ("cpu", "cuda") and not _extension.LOADED:
        return _extension.LOAD_ERROR
    if backend == "cuda":
        if not _extension.built_with_cuda():
            return (
                "the extension was built without CUDA kernels (torch had no CUDA or nvcc was not found at "
                "build time); reinstall with a CUDA build of torch and nvcc on PATH, or set FORCE_CUDA=1"
            )
        if not torch.cuda.is_available():
            return "no CUDA GPU is visible to torch"
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed; install it with `pip install triton` (or `pip install 'csad[triton]'`)"
        if not torch.cuda.is_available() and not _triton_interpreted():
            return "no CUDA GPU is visible to torch (set TRITON_INTERPRET=1 to run Triton kernels, slowly, on the CPU)"
    if not _KERNELS[backend]:
        return f"the {backend!r} backend has no kernels in this version of csad_kernels"
    return None


def available_backends() -> list[str]:
    """Backends that can run on this machine, e.g. ``['reference', 'cpu']``."""
    return [backend for backend in BACKENDS if unavailable_reason(backend) is None]


def resolve(op: str, requested: str, device: torch.device) -> tuple[str, Callable]:
    """``(backend, kernel)`` of ``op`` for ``requested`` (a backend or ``"auto"``) on ``device``."""
    source = "backend"
    if requested == "auto" and os.environ.get(ENV_VAR, "auto") != "auto":
        requested, source = os.environ[ENV_VAR], ENV_VAR
    if requested != "auto" and requested not in BACKENDS:
        raise ValueError(f"{source} must be 'auto' or one of {', '.join(map(repr, BACKENDS))}; got {requested!r}")
    if requested == "auto":
        return _auto(op, device)
    return _explicit(op, requested, device, source)


def _auto(op: str, device: torch.device) -> tuple[str, Callable]:
    for backend in AUTO_ORDER.get(device.type, ("reference",)):
        if op in _KERNELS[backend] and device.type in _device_types(backend) and unavailable_reason(backend) is None:
            return backend, _KERNELS[backend][op]
    raise BackendUnavailableError(f"no backend implements {op} for tensors on {device}")


def _explicit(op: str, backend: str, device: torch.device, source: str) -> tuple[str, Callable]:
    reason = unavailable_reason(backend)
    if reason is not None:
        raise BackendUnavailableError(f"{source}={backend!r} is not available: {reason}")
    if device.type not in _device_types(backend):
        raise BackendUnavailableError(
            f"{source}={backend!r} runs on {' or '.join(_device_types(backend))} tensors, got tensors on {device}"
        )
    if op not in _KERNELS[backend]:
        offering = [b for b in BACKENDS if op in _KERNELS[b] and unavailable_reason(b) is None]
        raise BackendUnavailableError(
            f"{source}={backend!r} has no kernel for {op} yet; backends that implement it here: {offering} "
            "(or pass backend='auto')"
        )
    return backend, _KERNELS[backend][op]


def selected_backend(backend: str = "auto", device: torch.device | str = "cpu") -> str:
    """The backend that ``cs_mutual_information(..., backend=backend)`` uses for tensors on ``device``.

    Raises ``BackendUnavailableError`` (saying why) when that backend cannot run there.
    """
    return resolve("cs_mutual_information", backend, torch.device(device))[0]
