"""Records what the Triton backend launches, without a GPU and without running a kernel.

:func:`recorded` runs a function on ``meta`` tensors (no memory, no data) with every Triton kernel launch
(``kernel[grid](...)``) replaced by a record of the kernel, its grid and its arguments, and the custom ops of
the backend (``csad_triton::*``, whose ``meta`` kernels would only make empty outputs) redirected to their
real Python bodies, so the launchers' own code chooses every block size and ``num_warps``. The same run
counts the ATen kernels outside the Triton kernels and notes any host synchronisation (``.item()``,
``nonzero``, a copy to the CPU) and any copy from a CPU tensor to the device, which a CUDA graph cannot capture
(a tensor made on the device from Python numbers, ``torch.tensor(x, device=...)``, is not seen).

Used by :mod:`benchmarks.resources` (which compiles the recorded launches for sm_90) and by the launch-count
test. Triton must not run in its interpreter here (``TRITON_INTERPRET`` unset when Triton is imported).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch._library.custom_ops import OPDEFS
from torch.utils._python_dispatch import TorchDispatchMode

CUSTOM_NAMESPACE = "csad_triton"
# ATen ops that launch no kernel: allocation and metadata only (views are recognised by their schema).
NO_KERNEL = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "lift_fresh"}
# ATen ops that wait for the device (a CUDA graph cannot capture them).
HOST_SYNC = {"_local_scalar_dense", "nonzero", "is_nonzero", "equal", "item", "masked_select", "_assert_async"}


@dataclasses.dataclass
class Launch:
    """One recorded ``kernel[grid](*args, **kwargs)``."""

    kernel: Any  # a triton JITFunction
    grid: tuple[int, ...]
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__


@dataclasses.dataclass
class Recording:
    launches: list[Launch] = dataclasses.field(default_factory=list)
    aten: list[str] = dataclasses.field(default_factory=list)  # ATen kernels, in order
    syncs: list[str] = dataclasses.field(default_factory=list)  # host synchronisations, in order


def _grid(grid, args, kwargs, kernel) -> tuple[int, ...]:
    if callable(grid):
        names = kernel.arg_names
        grid = grid(dict(zip(names, args, strict=False)) | kwargs)
    return tuple(int(g) for g in grid)


def _from_host(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether an ATen op copies a CPU tensor to another device (``.to(device)``, ``dst.copy_(cpu_tensor)``)."""
    if name == "_to_copy":
        target = kwargs.get("device")
        return args[0].device.type == "cpu" and target is not None and torch.device(target).type != "cpu"
    if name == "copy_":
        return args[1].device.type == "cpu" and args[0].device.type != "cpu"
    return False


class _Mode(TorchDispatchMode):
    """Counts ATen kernels and host syncs; runs the backend's custom ops by their Python bodies."""

    def __init__(self, recording: Recording) -> None:
        super().__init__()
        self.recording = recording

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == CUSTOM_NAMESPACE:
            with self:
                return OPDEFS[func._schema.name.split(".")[0]]._init_fn(*args, **kwargs)
        name = func._schema.name.split("::")[-1]
        if name in HOST_SYNC or (name == "_to_copy" and kwargs.get("device") == torch.device("cpu")):
            self.recording.syncs.append(name)
        elif _from_host(name, args, kwargs):
            self.recording.syncs.append(f"{name} from the CPU")
        elif not func.is_view and name not in NO_KERNEL:
            self.recording.aten.append(name)
        return func(*args, **kwargs)


@contextlib.contextmanager
def recorded() -> Iterator[Recording]:
    """Inside: Triton launches are recorded (not run), ATen kernels counted; use ``meta`` tensors."""
    from triton.runtime.jit import JITFunction

    recording = Recording()
    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        recording.launches.append(Launch(self, _grid(grid, args, kwargs, self), args, kwargs))

    JITFunction.run = record
    try:
        with _Mode(recording):
            yield recording
    finally:
        JITFunction.run = original


def record(fn: Callable[[], Any]) -> Recording:
    """Runs ``fn()`` under :func:`recorded` and returns the recording."""
    with recorded() as recording:
        fn()
    return recording
