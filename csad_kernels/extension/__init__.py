"""Python side of the C++ extension ``csad_kernels._C``: fake (meta) kernels, autograd and wrappers of its
``csad::`` ops.

The package is named for what it wraps, not for a device: each ``torch.ops.csad.<op>`` dispatches on its tensors'
device, so one wrapper per op serves CPU tensors (the C++ kernels of csrc/cpu/) and CUDA tensors (csrc/cuda/) alike.
Importing the package imports ``csad_kernels.extension.<op>`` for every op of :data:`csad_kernels._dispatch.OPS`
(each registers its op's fake kernel and autograd formula) and registers the wrappers as backend ``"cpu"``;
:mod:`csad_kernels.cuda` registers the same wrappers as backend ``"cuda"`` when the extension has CUDA kernels. It is
a no-op when the extension is not built (:mod:`csad_kernels._extension` loads it and says why it is missing).

Formerly ``csad_kernels.cpu``, which stays importable as a deprecated alias of this package.
"""

import importlib

from csad_kernels._dispatch import OPS, register_kernel
from csad_kernels._extension import LOADED

if LOADED:
    # csad_kernels.extension.<op> defines <op>, a thin wrapper over torch.ops.csad.<op> with the reference kernel's
    # signature (csad_kernels.api); the submodules stay package attributes.
    for _op in OPS:
        register_kernel(_op, "cpu", getattr(importlib.import_module(f"{__name__}.{_op}"), _op))
