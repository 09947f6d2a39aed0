"""CUDA backend of csad_kernels: the ``csad::`` ops' CUDA kernels (csrc/cuda/), registered as backend ``"cuda"``.

The C++/CUDA side registers a CUDA implementation for every ``csad::`` op of csrc/csad.cpp
(``TORCH_LIBRARY_IMPL(csad, CUDA, m)``). The fake kernels and autograd formulas are registered per op,
not per device, by :mod:`csad_kernels.extension`, and its wrappers call ``torch.ops.csad.*``, which dispatch
on the tensors' device; so this package only offers those same wrappers for ``backend="cuda"``.
Importing it is a no-op unless the extension was built with its CUDA sources
(:func:`csad_kernels._extension.built_with_cuda`).

Status: compile-checked only, never run on a GPU. ``csrc/cuda/check_compile.sh`` compiles the ``.cu`` kernels with
nvcc (sm_80, sm_90) and syntax-checks the C++ launchers against torch's headers; the extension has not yet been built
with its CUDA sources. The GPU tests are the ``cuda`` cases of tests/test_op_*.py and tests/test_cuda_backend.py.

Numerics: float32 and float64 are computed in their own precision; float16/bfloat16 inputs are upcast
to float32 inside and results returned in the input dtype. The GEMMs go through cuBLAS via ATen, so
they follow torch's matmul precision settings: keep TF32 off (the default,
``torch.backends.cuda.matmul.allow_tf32 = False``) for the 1e-4 accuracy of DESIGN.md §2.
"""

from __future__ import annotations

import importlib

from csad_kernels._dispatch import OPS
from csad_kernels._extension import built_with_cuda

AVAILABLE = built_with_cuda()

if AVAILABLE:
    from csad_kernels import extension as _extension_ops  # noqa: F401  (registers the ops' fake kernels and autograd)
    from csad_kernels._dispatch import register_kernel

    # csad_kernels.extension.<op> defines <op>, a thin wrapper over torch.ops.csad.<op> with the reference
    # kernel's signature (csad_kernels.api); the dispatcher sends CUDA tensors to csrc/cuda/.
    for _op in OPS:
        register_kernel(_op, "cuda", getattr(importlib.import_module(f"csad_kernels.extension.{_op}"), _op))
