"""Python side of the C++ CPU backend: fake (meta) kernels and autograd of the ``csad::`` ops.

Importing this package registers them; it is a no-op when the extension is not built.
"""

import importlib

from csad_kernels._dispatch import OPS
from csad_kernels._extension import LOADED

if LOADED:
    # csad_kernels.cpu.<op> registers op <op> when imported; the submodules stay package attributes.
    for _op in OPS:
        importlib.import_module(f"{__name__}.{_op}")
