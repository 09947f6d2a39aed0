"""Python side of the C++ extension: fake (meta) kernels, autograd and wrappers of the ``csad::`` ops.

The ops dispatch on the tensors' device, so these serve the ``cpu`` backend and, through
:mod:`csad_kernels.cuda`, the ``cuda`` backend alike. Importing this package registers them; it is a
no-op when the extension is not built.
"""

import importlib

from csad_kernels._dispatch import OPS
from csad_kernels._extension import LOADED

if LOADED:
    # csad_kernels.cpu.<op> registers op <op> when imported; the submodules stay package attributes.
    for _op in OPS:
        importlib.import_module(f"{__name__}.{_op}")
