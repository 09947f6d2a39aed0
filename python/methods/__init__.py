"""Debiasing methods, all run by one trainer (``python.trainer``)."""

from __future__ import annotations

from python.methods.base import Batch, Method, Phase
from python.methods.blind_eye import BlindEye
from python.methods.csad import CSAD, AdversarialJSD, CSADContent, CSADMultiSimilarity, CSADStructural
from python.methods.grad_reverse import GradientReversal
from python.methods.mi_label import MILabel
from python.methods.oracle import Oracle

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (Method, CSAD, CSADMultiSimilarity, CSADContent, CSADStructural, AdversarialJSD, GradientReversal,
                MILabel, BlindEye, Oracle)
}

__all__ = ["METHODS", "Batch", "Method", "Phase"]
