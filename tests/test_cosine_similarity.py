import pytest
import torch
import torch.nn.functional as F
from _helpers import clustered, rel_err

import csad_kernels as ck
import csad_kernels.reference as ref

SHAPES = [((), 2, 1, 2), ((), 37, 7, 33), ((3,), 64, 32, 17), ((2, 2), 13, 33, 13)]


def _pair(batch, n, d, m, dtype=torch.float64, seed=0):
    x, _ = clustered(batch, n, d, dtype=dtype, seed=seed)
    y, _ = clustered(batch, m, d, dtype=dtype, seed=seed + 1)
    return x, y


@pytest.mark.parametrize("batch,n,d,m", SHAPES)
def test_reference_matches_definition(batch, n, d, m):
    x, y = _pair(batch, n, d, m)
    expected = F.cosine_similarity(x.unsqueeze(-2), y.unsqueeze(-3), dim=-1, eps=0.0)
    torch.testing.assert_close(ref.cosine_similarity(x, y), expected, rtol=1e-12, atol=1e-12)


def test_reference_gradcheck():
    x, y = _pair((2,), 6, 4, 5)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ck.cosine_similarity(a, b, backend="reference"), (x, y))


def test_zero_rows_give_zero_similarity_and_finite_gradients():
    x, y = _pair((), 5, 3, 4)
    x[2] = 0.0
    x.requires_grad_()
    y.requires_grad_()
    for backend in ("reference", "cpu"):
        out = ck.cosine_similarity(x, y, backend=backend)
        assert torch.all(out[2] == 0)
        gx, gy = torch.autograd.grad(out.sum(), (x, y))
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()


@pytest.mark.parametrize("batch,n,d,m", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_cpu_matches_reference(batch, n, d, m, dtype, tol):
    x64, y64 = _pair(batch, n, d, m)
    x, y = x64.to(dtype).requires_grad_(), y64.to(dtype).requires_grad_()
    out = ck.cosine_similarity(x, y, backend="cpu")
    assert out.dtype == dtype and out.shape == (*batch, n, m)
    grad = torch.randn_like(out)
    gx, gy = torch.autograd.grad(out, (x, y), grad)
    x64.requires_grad_()
    y64.requires_grad_()
    expected = ref.cosine_similarity(x64, y64)
    ex, ey = torch.autograd.grad(expected, (x64, y64), grad.double())
    assert rel_err(out, expected) <= tol
    assert rel_err(gx, ex, floor=1.0) <= tol
    assert rel_err(gy, ey, floor=1.0) <= tol


def test_cpu_gradcheck():
    x, y = _pair((2,), 7, 5, 6)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ck.cosine_similarity(a, b, backend="cpu"), (x, y))


def test_cpu_non_contiguous_inputs_and_stride_zero_gradient():
    x, y = _pair((3,), 9, 6, 9)
    xt = x.transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()  # non-contiguous view
    yt = y[..., ::1, :].clone()[:, :, :].requires_grad_()
    assert not xt.is_contiguous()
    out = ck.cosine_similarity(xt, yt, backend="cpu")
    out.sum().backward()  # the incoming gradient is an expanded (stride-0) tensor of ones
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    ref.cosine_similarity(xr, yr).sum().backward()
    torch.testing.assert_close(out, ref.cosine_similarity(x, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xt.grad, xr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(yt.grad, yr.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_low_precision_is_computed_in_fp32_and_returned_in_input_dtype(dtype):
    x, y = _pair((), 16, 8, 16, dtype=dtype)
    out = ck.cosine_similarity(x, y, backend="cpu")
    assert out.dtype == dtype
    expected = ref.cosine_similarity(x.double(), y.double())
    # Only the final rounding to the low-precision dtype may differ from float64.
    torch.testing.assert_close(out, expected.to(dtype), rtol=0, atol=torch.finfo(dtype).eps)


def test_cpu_opcheck():
    x, y = _pair((2,), 8, 4, 5, dtype=torch.float32)
    torch.library.opcheck(torch.ops.csad.cosine_similarity.default, (x.requires_grad_(), y.requires_grad_()))
    torch.library.opcheck(
        torch.ops.csad.cosine_similarity_backward.default, (torch.randn(2, 8, 5), x.detach(), y.detach())
    )


def test_cpu_compiles_with_fullgraph():
    x, y = _pair((2,), 8, 4, 5, dtype=torch.float32)
    x.requires_grad_()
    compiled = torch.compile(lambda a, b: ck.cosine_similarity(a, b, backend="cpu").square().sum(), fullgraph=True)
    value = compiled(x, y)
    (grad,) = torch.autograd.grad(value, x)
    expected_x = x.detach().double().requires_grad_()
    expected = ref.cosine_similarity(expected_x, y.double()).square().sum()
    expected.backward()
    assert rel_err(value.detach(), expected.detach()) <= 1e-6
    assert rel_err(grad, expected_x.grad) <= 1e-5
