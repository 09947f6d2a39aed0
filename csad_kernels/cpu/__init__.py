"""Python side of the C++ CPU backend: fake (meta) kernels and autograd of the ``csad::`` ops.

Importing this package registers them; it is a no-op when the extension is not built.
"""

from csad_kernels._extension import LOADED

if LOADED:
    from csad_kernels.cpu import cosine_similarity, cs_mutual_information  # noqa: F401  (register the ops)
