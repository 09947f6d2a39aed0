import pytest
import torch
from _helpers import BACKENDS, assert_matches, clustered

import csad_kernels as ck
import csad_kernels.reference as ref


def _similarities(batch, n, d=6, seed=0):
    x, _ = clustered(batch, n, d, seed=seed)
    return ref.cosine_similarity(x, x)


@pytest.mark.parametrize("batch,n", [((), 2), ((), 37), ((2, 3), 16)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_are_probabilities_matching_softmax(batch, n, backend):
    s = _similarities(batch, n)
    e = ck.softmax_adjacency(s, 10.0, backend=backend)
    assert e.shape == (*batch, n, n)
    assert torch.all(e > 0)
    torch.testing.assert_close(e.sum(-1), torch.ones(batch + (n,), dtype=e.dtype), rtol=0, atol=1e-12)
    expected = torch.exp(10 * s) / torch.exp(10 * s).sum(-1, keepdim=True)
    torch.testing.assert_close(e, expected, rtol=1e-12, atol=1e-15)


def test_tensor_and_number_tau_agree():
    s = _similarities((), 9)
    torch.testing.assert_close(ck.softmax_adjacency(s, torch.tensor(3.5, dtype=s.dtype)), ck.softmax_adjacency(s, 3.5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_in_s_and_tau(backend):
    s = _similarities((2,), 7).requires_grad_()
    tau = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: ck.softmax_adjacency(a, t, backend=backend), (s, tau))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_tau_does_not_overflow(backend):
    s = _similarities((), 12)
    e = ck.softmax_adjacency(s.float(), 1e4, backend=backend)
    assert torch.isfinite(e).all()
    torch.testing.assert_close(e.sum(-1), torch.ones(12), rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch,n", [((), 2), ((3,), 37), ((), 130), ((2,), 256)])
def test_cpu_float32_matches_float64_reference(batch, n):
    s = _similarities(batch, n)
    grad = torch.randn(*batch, n, n, dtype=torch.float64)

    def run(dtype, backend):
        s_in = s.to(dtype).requires_grad_()
        tau = torch.tensor(9.0, dtype=dtype, requires_grad=True)
        out = ck.softmax_adjacency(s_in, tau, backend=backend)
        return (out, *torch.autograd.grad(out, (s_in, tau), grad.to(dtype)))

    exact, plain = run(torch.float64, "reference"), run(torch.float32, "reference")
    for name, *values in zip(("e", "s", "tau"), run(torch.float32, "cpu"), exact, plain, strict=True):
        assert_matches(*values, name=name)


def test_cpu_opcheck():
    s = _similarities((2,), 9).float().requires_grad_()
    torch.library.opcheck(torch.ops.csad.softmax_adjacency.default, (s, torch.tensor(5.0, requires_grad=True)))
