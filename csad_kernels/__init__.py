"""csad_kernels: the cross-sample mutual-information estimator of CSAD, fused and differentiable.

Public API (DESIGN.md §2): :func:`cosine_similarity`, :func:`softmax_adjacency`, :func:`rwr`,
:func:`symmetric_cross_entropy`, :func:`cross_sample_mi`, :func:`cs_mutual_information`,
:class:`CrossSampleMI`, :func:`available_backends`, :func:`selected_backend`. :mod:`csad_kernels.reference` defines the
semantics every backend matches.
"""

from csad_kernels import (
    cpu,  # noqa: F401  (registers the C++ CPU kernels when built)
    cuda,  # noqa: F401  (registers the CUDA kernels when the extension was built with them)
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
