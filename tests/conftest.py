import os

import pytest
import torch

# Without a GPU, Triton kernels run in Triton's CPU interpreter; the variable must be set before
# any Triton kernel is imported, so before csad_kernels is.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed_and_clean_env(monkeypatch):
    torch.manual_seed(0)
    monkeypatch.delenv("CSAD_BACKEND", raising=False)


@pytest.fixture
def ieee_float32_matmul():
    """Full float32 GEMMs (no TF32) for the float32 reference runs on a GPU, whatever the session's setting."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)
