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
