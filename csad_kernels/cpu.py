"""Deprecated alias of :mod:`csad_kernels.extension`, the former name of that package.

The package holds the Python side of the C++ extension's ops, which serve CPU and CUDA tensors alike, so it was
renamed for what it wraps instead of one device. ``import csad_kernels.cpu`` and ``csad_kernels.cpu.<op>`` (e.g.
``from csad_kernels.cpu.cs_mutual_information import EstimatorState``) still work and give the same module objects
as ``csad_kernels.extension``; importing this alias warns (``DeprecationWarning``). The backend name ``"cpu"`` (what
``backend=`` takes) is not affected.
"""

import sys
import warnings

from csad_kernels import extension as _extension_package
from csad_kernels._dispatch import OPS

warnings.warn(
    "csad_kernels.cpu is deprecated: the package was renamed csad_kernels.extension (it serves CPU and CUDA "
    "tensors); import that instead. backend='cpu' is unchanged.",
    DeprecationWarning,
    stacklevel=2,
)

# ``import csad_kernels.cpu.<op>`` finds these entries in sys.modules once this module has run.
for _name in (*OPS, "_scalars"):
    _module = getattr(_extension_package, _name, None)
    if _module is not None:  # None when the extension is not built (then the package imported no op module)
        sys.modules[f"{__name__}.{_name}"] = _module
        globals()[_name] = _module
