"""Loads the compiled extension ``csad_kernels._C`` and remembers why it is missing if it is."""

from __future__ import annotations

import importlib

import torch

_BUILD_HINT = (
    "build it with `pip install torch==2.13.0 ninja && pip install --no-build-isolation -e .` "
    "from the repository root (a C++17 compiler is needed)"
)


def _load() -> tuple[bool, str]:
    try:
        importlib.import_module("csad_kernels._C")
    except ImportError as error:
        return False, f"the C++ extension csad_kernels._C is not built or failed to load ({error}); {_BUILD_HINT}"
    return True, ""


LOADED, LOAD_ERROR = _load()


def built_with_cuda() -> bool:
    """Whether the extension has CUDA kernels registered (it was built with csrc/cuda/)."""
    return LOADED and torch._C._dispatch_has_kernel_for_dispatch_key("csad::cosine_similarity", "CUDA")
