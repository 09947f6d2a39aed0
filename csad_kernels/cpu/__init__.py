"""Python side of the C++ CPU backend: fake (meta) kernels and autograd of the ``csad::`` ops.

Importing this package registers them; it is a no-op when the extension is not built.
"""

from csad_kernels._extension import LOADED

if LOADED:
    from csad_kernels.cpu import (  # noqa: F401  (importing registers the ops)
        cosine_similarity,
        cross_sample_mi,
        cs_mutual_information,
        rwr,
        softmax_adjacency,
        symmetric_cross_entropy,
    )
