"""cosine_similarity(x, y) (DESIGN.md §2) on every backend × dtype: the reference's definition, the float64
reference match (tests/_compare.py's rule) for the value and both gradients, and the edge cases."""

import pytest
import torch
import torch.nn.functional as F
from _compare import (
    assert_close_to_exact,
    assert_matches_reference,
    backend_dtypes,
    backends,
    backends_computing_in,
    custom_op,
    device_of,
    skip_unless_compiled,
)
from _helpers import clustered

import csad_kernels as ck
import csad_kernels.reference as ref

pytestmark = pytest.mark.usefixtures("ieee_float32_matmul")

# (batch, n, m, d): d = 1 (the gradients are zero in exact arithmetic), ragged n, m and d, one and two batch dims
SHAPES = [
    ((), 2, 2, 1),
    ((), 37, 33, 7),
    ((), 37, 100, 7),
    ((3,), 64, 17, 32),
    ((2, 2), 13, 13, 33),
    ((1,), 256, 130, 33),
    ((3,), 1024, 513, 1),
    ((1,), 1024, 513, 32),
]


def sample_inputs(batch, n, m, d, seed=0):
    """Clustered rows x (*batch, n, d) and y (*batch, m, d), float64."""
    x, _ = clustered(batch, n, d, seed=seed)
    y, _ = clustered(batch, m, d, seed=seed + 1)
    return {"x": x, "y": y}


def _cosine(x, y, backend):
    return ck.cosine_similarity(x, y, backend=backend)


@pytest.mark.parametrize("batch,n,m,d", SHAPES[:5])
def test_reference_is_the_definition(batch, n, m, d):
    x, y = sample_inputs(batch, n, m, d).values()
    expected = F.cosine_similarity(x.unsqueeze(-2), y.unsqueeze(-3), dim=-1, eps=0.0)
    torch.testing.assert_close(ref.cosine_similarity(x, y), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch,n,m,d", SHAPES)
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_matches_float64_reference(backend, dtype, batch, n, m, d):
    if n > 256:
        skip_unless_compiled(backend)
    assert_matches_reference(_cosine, sample_inputs(batch, n, m, d, seed=n), backend, dtype, seed=n)


@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_gradcheck_in_float64(backend):
    x, y = (t.to(device_of(backend)).requires_grad_() for t in sample_inputs((2,), 7, 6, 5).values())
    assert torch.autograd.gradcheck(lambda a, b: _cosine(a, b, backend), (x, y))


@pytest.mark.parametrize("backend", backends())
def test_zero_rows_give_zero_similarity_and_finite_gradients(backend):
    x, y = sample_inputs((), 5, 4, 3).values()
    x[2] = 0.0
    dtype = torch.float32 if backend == "triton" else torch.float64
    x, y = (t.to(device_of(backend), dtype).requires_grad_() for t in (x, y))
    out = _cosine(x, y, backend)
    assert torch.all(out[2] == 0)
    gx, gy = torch.autograd.grad(out.sum(), (x, y))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()


@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_non_contiguous_inputs_and_stride_zero_gradient(backend, dtype):
    x, _ = clustered((3,), 20, 9, seed=1)
    device = device_of(backend)
    results = {}
    for name, run_dtype, run_backend in (
        ("got", dtype, backend),
        ("plain", dtype, "reference"),
        ("exact", None, "reference"),
    ):
        xt = x.to(device, run_dtype or torch.float64).transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
        assert not xt.is_contiguous()
        out = _cosine(xt, xt[:, ::2], run_backend)  # y: a strided view of x
        out.sum().backward()  # the incoming gradient is an expanded (stride-0) tensor of ones
        results[name] = (out, xt.grad)
    for i, what in enumerate(("value", "dx")):
        assert_close_to_exact(results["got"][i], results["exact"][i], results["plain"][i], dtype, name=what)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_low_precision_is_computed_in_float32_and_returned_in_input_dtype(backend, dtype):
    x, y = (t.to(device_of(backend), dtype) for t in sample_inputs((), 16, 16, 8).values())
    out = _cosine(x, y, backend)
    assert out.dtype == dtype
    expected = ref.cosine_similarity(x.double(), y.double())
    # Only the final rounding to the low-precision dtype may differ from float64.
    torch.testing.assert_close(out, expected.to(dtype), rtol=0, atol=torch.finfo(dtype).eps)


@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_opcheck(backend):
    device = device_of(backend)
    x, y = (t.to(device, torch.float32).requires_grad_() for t in sample_inputs((2,), 8, 5, 4).values())
    torch.library.opcheck(custom_op(backend, "cosine_similarity"), (x, y))
    if backend != "triton":  # the C++ backward is an op of its own
        grad = torch.randn(2, 8, 5, device=device)
        for output_mask in ([True, True], [True, False], [False, True]):
            args = (grad, x.detach(), y.detach(), output_mask)
            torch.library.opcheck(torch.ops.csad.cosine_similarity_backward.default, args)


@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_compiles_with_fullgraph(backend):
    compiled = torch.compile(lambda a, b: _cosine(a, b, backend).square().sum(), fullgraph=True)

    def loss(a, b, backend):
        return compiled(a, b) if backend != "reference" else _cosine(a, b, "reference").square().sum()

    assert_matches_reference(loss, sample_inputs((2,), 8, 5, 4), backend, torch.float32)
