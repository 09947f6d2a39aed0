import pytest
import torch
from _helpers import clustered, labels

import csad_kernels as ck
from csad_kernels import _dispatch
from csad_kernels._dispatch import resolve

CPU = torch.device("cpu")


def test_reference_and_cpu_are_available_here():
    backends = ck.available_backends()
    assert backends[:2] == ["reference", "cpu"]
    assert set(backends) <= set(ck.BACKENDS)


def test_auto_prefers_the_fused_cpu_kernel():
    assert resolve("cosine_similarity", "auto", CPU)[0] == "cpu"
    assert resolve("cs_mutual_information", "auto", CPU)[0] == "cpu"


def test_selected_backend_names_what_the_estimator_runs_on(monkeypatch):
    assert ck.selected_backend() == "cpu" and ck.selected_backend("reference", "cpu") == "reference"
    monkeypatch.setenv("CSAD_BACKEND", "reference")
    assert ck.selected_backend("auto", "cpu") == "reference"
    with pytest.raises(ck.BackendUnavailableError, match="backend='cuda' is not available"):
        ck.selected_backend("cuda", "cpu")


def test_csad_backend_overrides_auto(monkeypatch):
    monkeypatch.setenv("CSAD_BACKEND", "reference")
    assert resolve("cosine_similarity", "auto", CPU)[0] == "reference"
    # an explicit backend is not overridden
    assert resolve("cosine_similarity", "cpu", CPU)[0] == "cpu"


def test_csad_backend_with_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("CSAD_BACKEND", "fastest")
    with pytest.raises(ValueError, match="CSAD_BACKEND must be 'auto' or one of"):
        ck.cosine_similarity(torch.randn(3, 2), torch.randn(3, 2))


def test_csad_backend_naming_an_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setenv("CSAD_BACKEND", "cuda")
    with pytest.raises(ck.BackendUnavailableError, match="CSAD_BACKEND='cuda' is not available: .*without CUDA"):
        ck.cosine_similarity(torch.randn(3, 2), torch.randn(3, 2))


def test_cuda_backend_unavailable_says_why_and_how():
    reason = ck.unavailable_reason("cuda")
    assert "cuda" not in ck.available_backends() and "FORCE_CUDA" in reason
    with pytest.raises(ck.BackendUnavailableError, match="backend='cuda' is not available"):
        ck.cosine_similarity(torch.randn(3, 2), torch.randn(3, 2), backend="cuda")


def test_triton_without_a_gpu_or_the_interpreter_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = ck.unavailable_reason("triton")
    assert "TRITON_INTERPRET=1" in reason or "pip install triton" in reason
    with pytest.raises(ck.BackendUnavailableError, match="backend='triton' is not available"):
        ck.cosine_similarity(torch.randn(3, 2), torch.randn(3, 2), backend="triton")


def test_an_op_without_a_kernel_on_an_available_backend_is_an_error_naming_alternatives(monkeypatch):
    kernels = {backend: dict(ops) for backend, ops in _dispatch._KERNELS.items()}
    kernels["reference"]["reference_only_op"] = lambda x: x
    monkeypatch.setattr(_dispatch, "_KERNELS", kernels)
    with pytest.raises(ck.BackendUnavailableError, match=r"has no kernel for reference_only_op yet; .*\['reference'\]"):
        resolve("reference_only_op", "cpu", CPU)
    assert resolve("reference_only_op", "auto", CPU)[0] == "reference"


def test_cpu_backend_refuses_tensors_on_other_devices():
    with pytest.raises(ck.BackendUnavailableError, match="runs on cpu tensors"):
        ck.cosine_similarity(torch.empty(3, 2, device="meta"), torch.empty(3, 2, device="meta"), backend="cpu")


def test_reference_runs_any_floating_dtype():
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        e = torch.full((4, 4), 0.25, dtype=dtype)
        assert ck.rwr(e, backend="reference").dtype == dtype


def test_one_op_list_registered_by_every_backend():
    """_dispatch.OPS is the op list: every backend that can run here registers exactly it (the reference in its
    order)."""
    assert tuple(_dispatch._KERNELS["reference"]) == _dispatch.OPS
    for backend in ck.available_backends():
        assert set(_dispatch._KERNELS[backend]) == set(_dispatch.OPS), backend
    assert set(ck.__all__) >= set(_dispatch.OPS)


def test_auto_picks_the_cpu_backend_for_ms_and_groups():
    u, _ = clustered((), 12, 4, seed=0)
    v, _ = clustered((), 12, 4, seed=1)
    bias, groups = labels((), 12), labels((), 12, classes=2, seed=1)
    kw = dict(alpha=1.2, alpha_neg=0.8, tau_y=8.0, tau_b=12.0, groups=groups, estimator="ms")
    auto = ck.cs_mutual_information(u, v, bias, **kw)
    cpu = ck.cs_mutual_information(u, v, bias, **kw, backend="cpu")
    assert torch.equal(auto, cpu)  # (the cpu backend against the reference: tests/test_op_cs_mutual_information.py)
