"""Triton backend of csad_kernels: fused kernels, one file per op (kernel + launcher + autograd).

Importing this package registers the Triton kernels with :mod:`csad_kernels._dispatch`; it is a
no-op when Triton is not installed. Without a GPU, Triton kernels only run in Triton's CPU
interpreter, which needs ``TRITON_INTERPRET=1`` set before this package is imported.

Status: tested in the interpreter and compiled ahead of time for sm_90 (tests/test_triton_offline.py,
``python -m benchmarks.resources``); not yet run on a GPU.

Numerics: every kernel computes in float32. float16/bfloat16 inputs are upcast inside and results
returned in the input dtype; float64 inputs are also computed in float32 (and returned as float64),
so use ``backend="reference"`` or ``"cpu"`` for float64 accuracy (gradcheck).

Matrix products: ``set_precision("tf32x3" | "ieee" | "tf32")``, the context manager ``precision(mode)`` or
the environment variable ``CSAD_TRITON_PRECISION`` choose the ``input_precision`` of every ``tl.dot``
(default ``tf32x3``; see :mod:`csad_kernels.triton._common`).
"""

from __future__ import annotations

import importlib.util

from csad_kernels._dispatch import OPS

AVAILABLE = importlib.util.find_spec("triton") is not None

if AVAILABLE:
    import importlib

    from csad_kernels._dispatch import register_kernel
    from csad_kernels.triton._common import PRECISIONS, dot_precision, precision, set_precision  # noqa: F401

    # Each op lives in the submodule of its name, which defines a function of that name with the
    # signature of the reference kernel (csad_kernels.api). The submodules stay package attributes.
    for _op in OPS:
        register_kernel(_op, "triton", getattr(importlib.import_module(f"{__name__}.{_op}"), _op))
