"""csad: Cross-Sample Adversarial Debiasing.

Installed (``pip install .``) this folder is the package ``csad``: ``csad-train`` or ``python -m csad.train`` trains
on a benchmark or your own table. From the repository root the same files run as ``python -m python.train``.

Uses ``csad_kernels`` through its public API only (and ``csad_kernels.module.mlp``, the one MLP builder).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# public names, imported on first use so that ``python -m csad.train`` does not load scikit-learn
_PUBLIC = {"Debiaser": ".debiaser", "CSADClassifier": ".sklearn_api"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name], __name__), name)
