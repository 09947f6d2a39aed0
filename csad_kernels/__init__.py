"""csad_kernels: the cross-sample mutual-information estimator of CSAD, fused and differentiable.

Public API (DESIGN.md §2): :func:`cosine_similarity`, :func:`softmax_adjacency`, :func:`rwr`,
:func:`symmetric_cross_entropy`, :func:`cross_sample_mi`, :func:`cs_mutual_information`,
:class:`CrossSampleMI`, :func:`available_backends`, :func:`selected_backend`. :mod:`csad_kernels.reference` defines the
semantics every backend matches. In names, ``cs`` means cross-sample; the Eq. 2 estimator is the value
``estimator="cs"`` only (DESIGN.md §2, naming rule).
"""

import importlib as _importlib
from types import ModuleType as _ModuleType

from csad_kernels import (
    cuda,  # noqa: F401  (registers the extension's wrappers as backend "cuda" when it was built with CUDA kernels)
    extension,  # noqa: F401  (the C++ extension's ops: registers them as backend "cpu" when it is built)
    triton,  # noqa: F401  (registers the Triton kernels when Triton is installed)
)
from csad_kernels._dispatch import (
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    selected_backend,
    unavailable_reason,
)
from csad_kernels.api import (
    cosine_similarity,
    cross_sample_mi,
    cs_mutual_information,
    rwr,
    softmax_adjacency,
    symmetric_cross_entropy,
)
from csad_kernels.module import CrossSampleMI

__version__ = "0.1.0"


def __getattr__(name: str) -> _ModuleType:
    """``csad_kernels.cpu``, the deprecated name of :mod:`csad_kernels.extension`, imported on first use (it warns)."""
    if name == "cpu":
        return _importlib.import_module("csad_kernels.cpu")
    raise AttributeError(f"module 'csad_kernels' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "CrossSampleMI",
    "available_backends",
    "cosine_similarity",
    "cross_sample_mi",
    "cs_mutual_information",
    "rwr",
    "selected_backend",
    "softmax_adjacency",
    "symmetric_cross_entropy",
    "unavailable_reason",
]
