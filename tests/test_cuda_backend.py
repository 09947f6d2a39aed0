"""The CUDA backend's own behaviour, beyond the public ops' semantics (tests/test_op_*.py, which run every op on
it against the float64 reference): every op has a CUDA kernel, the float64 forward and state equal the CPU
backend's, kernels run on the current stream, and the GEMMs stay float32 when the session allows TF32.

These tests need a CUDA GPU and an extension built with its CUDA sources; they are skipped, with the reason,
everywhere else.
"""

from __future__ import annotations

import pytest
import torch
from _compare import assert_close_to_exact
from _helpers import clustered, graph, labels

import csad_kernels as ck
import csad_kernels.cuda  # noqa: F401  (registers backend "cuda" when the extension has CUDA kernels)
import csad_kernels.reference as ref

REASON = ck.unavailable_reason("cuda")
pytestmark = [
    pytest.mark.skipif(REASON is not None, reason=f"backend 'cuda' is unavailable: {REASON}"),
    pytest.mark.usefixtures("ieee_float32_matmul"),
]

DEVICE = "cuda"
OPS = (
    "cosine_similarity",
    "cosine_similarity_backward",
    "softmax_adjacency",
    "softmax_adjacency_backward",
    "rwr",
    "rwr_backward",
    "symmetric_cross_entropy",
    "symmetric_cross_entropy_backward",
    "cross_sample_mi",
    "cross_sample_mi_backward",
    "cs_mutual_information_forward",
    "cs_mutual_information_backward",
)


def _problem(batch, n, d, seed=0):
    u, _ = clustered(batch, n, d, seed=seed + n)
    v, _ = clustered(batch, n, d, seed=seed + n + 7)
    return u, v


def test_every_op_has_a_cuda_kernel():
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"csad::{op}", "CUDA"), op


def test_float64_forward_and_state_equal_the_cpu_backend():
    u, v = _problem((2,), 45, 9)
    bias = labels((2,), 45, classes=8, k=3, seed=0)
    scalars = [torch.tensor(x, dtype=torch.float64) for x in (1.3, 8.0, 12.0)]
    args = (bias, None, 1, *scalars, 0.5, "joint", "cs", "mean")
    gpu_value, gpu_state = torch.ops.csad.cs_mutual_information_forward(
        u.to(DEVICE), v.to(DEVICE), *(a.to(DEVICE) if isinstance(a, torch.Tensor) else a for a in args)
    )
    cpu_value, cpu_state = torch.ops.csad.cs_mutual_information_forward(u, v, *args)
    for index, (got, want) in enumerate(zip([gpu_value, *gpu_state], [cpu_value, *cpu_state], strict=True)):
        assert got.shape == want.shape and got.dtype == want.dtype, index
        assert float((got.cpu() - want).norm()) <= 1e-10 * max(float(want.norm()), 1.0), index


def test_runs_on_the_current_stream():
    """Kernels are queued on the current stream (not the default one): results read back correctly."""
    u, v = _problem((2,), 64, 32)
    bias = labels((2,), 64, classes=3, seed=64).to(DEVICE)
    u32, v32 = u.float().to(DEVICE), v.float().to(DEVICE)
    kw = dict(alpha=1.3, tau_y=4.0, tau_b=6.0)
    expected = ck.cs_mutual_information(u32, v32, bias, **kw, backend="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = ck.cs_mutual_information(u32, v32, bias, **kw, backend="cuda")
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("setting", ["high", "medium", "fp32_precision=tf32"])
def test_gemms_stay_float32_when_the_session_allows_tf32(setting):
    """The backend's cuBLAS GEMMs ignore the session's TF32 setting (TF32 gives ~1e-3), through the legacy
    interface (torch.set_float32_matmul_precision) or the per-backend one, and restore it."""
    e = graph((2,), 256, 16)
    x, y = torch.randn(2, 2, 256, 64, dtype=torch.float64)
    plain_r = ref.rwr(e.float().to(DEVICE), 0.5)  # full float32 here (the ieee_float32_matmul fixture)
    plain_s = ref.cosine_similarity(x.float().to(DEVICE), y.float().to(DEVICE))
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision
    if setting.startswith("fp32_precision="):
        matmul.fp32_precision = setting.split("=")[1]
    else:
        torch.set_float32_matmul_precision(setting)
    try:
        got_r = ck.rwr(e.float().to(DEVICE), 0.5, backend="cuda")
        got_s = ck.cosine_similarity(x.float().to(DEVICE), y.float().to(DEVICE), backend="cuda")
        if setting.startswith("fp32_precision="):
            assert matmul.fp32_precision == "tf32"
        else:
            assert torch.get_float32_matmul_precision() == setting
    finally:
        matmul.fp32_precision = previous
    assert_close_to_exact(got_r, ref.rwr(e, 0.5), plain_r, torch.float32, name="rwr")
    assert_close_to_exact(got_s, ref.cosine_similarity(x, y), plain_s, torch.float32, name="cosine_similarity")
