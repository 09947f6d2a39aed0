"""Debiasing methods, all run by one trainer (``python.trainer``)."""

from __future__ import annotations

from .base import Batch, Method, Phase
from .baseline import Baseline
from .blind_eye import BlindEye
from .csad import CSAD, AdversarialJSD, CSADContent, CSADMultiSimilarity, CSADStructural
from .grad_reverse import GradientReversal
from .mi_label import MILabel
from .oracle import Oracle

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (Baseline, CSAD, CSADMultiSimilarity, CSADContent, CSADStructural, AdversarialJSD, GradientReversal,
                MILabel, BlindEye, Oracle)
}

__all__ = ["METHODS", "Baseline", "Batch", "Method", "Phase"]
