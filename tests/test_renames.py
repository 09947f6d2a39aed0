"""Issue 18's renames keep the old names working: csad_kernels.cpu (now csad_kernels.extension) as a deprecated
alias, the public kernel names and estimator values unchanged, and the baseline as its own method class."""

from __future__ import annotations

import importlib
import inspect
import sys
from types import SimpleNamespace

import pytest

import csad_kernels
from csad_kernels import _dispatch, _extension, reference
from python.methods import METHODS, Baseline, Method, Phase
from python.methods.oracle import Oracle

needs_extension = pytest.mark.skipif(not _extension.LOADED, reason=_extension.LOAD_ERROR or "extension not built")


@needs_extension
def test_the_extension_package_registers_every_op_as_backend_cpu():
    assert set(_dispatch._KERNELS["cpu"]) == set(_dispatch.OPS)
    for op in _dispatch.OPS:
        assert callable(getattr(importlib.import_module(f"csad_kernels.extension.{op}"), op))


@needs_extension
def test_csad_kernels_cpu_is_a_deprecated_alias_of_the_extension_package(monkeypatch):
    monkeypatch.delitem(sys.modules, "csad_kernels.cpu", raising=False)
    monkeypatch.delitem(vars(csad_kernels), "cpu", raising=False)  # not delattr: hasattr would import the alias
    with pytest.warns(DeprecationWarning, match="csad_kernels.extension"):
        alias = importlib.import_module("csad_kernels.cpu")
    for op in _dispatch.OPS:
        assert getattr(alias, op) is importlib.import_module(f"csad_kernels.extension.{op}")
        assert importlib.import_module(f"csad_kernels.cpu.{op}") is getattr(alias, op)
    old, new = (importlib.import_module(f"csad_kernels.{p}.cs_mutual_information") for p in ("cpu", "extension"))
    assert old.EstimatorState is new.EstimatorState
    assert csad_kernels.cpu is alias  # also reachable as an attribute of the package


def test_an_unknown_attribute_of_csad_kernels_still_raises():
    with pytest.raises(AttributeError, match="no_such_name"):
        csad_kernels.no_such_name  # noqa: B018


def test_public_names_and_estimator_values_are_unchanged():
    assert {"cs_mutual_information", "cross_sample_mi", "CrossSampleMI"} <= set(csad_kernels.__all__)
    assert reference.ESTIMATORS == ("cs", "jsd", "ms")
    assert _dispatch.BACKENDS == ("reference", "cpu", "cuda", "triton")


def test_method_is_abstract_and_every_registered_method_is_concrete():
    assert inspect.isabstract(Method)
    with pytest.raises(TypeError):
        Method(None, None, None)
    for name, cls in METHODS.items():
        assert cls.name == name and not inspect.isabstract(cls), name
    assert Method not in METHODS.values()


def test_the_baseline_is_its_own_method_and_the_oracle_is_a_baseline():
    assert METHODS["baseline"] is Baseline and list(METHODS)[0] == "baseline"
    assert issubclass(Oracle, Baseline)
    holder = SimpleNamespace(config=SimpleNamespace(pretrain_epochs=2, epochs=3))
    assert Baseline.phases(holder) == [Phase("train", 5)]
