import pytest
import torch
from _helpers import BACKENDS, graph, probabilities, rel_err

import csad_kernels as ck
import csad_kernels.reference as ref


def _loops(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    out = torch.empty(p.shape[0], q.shape[0], dtype=p.dtype)
    for i in range(p.shape[0]):
        for j in range(q.shape[0]):
            out[i, j] = 0.5 * ((p[i] * q[j].log()).sum() + (q[j] * p[i].log()).sum())
    return out


@pytest.mark.parametrize("n,m,k", [(2, 2, 2), (7, 5, 11), (20, 31, 20)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_definition(n, m, k, backend):
    p, q = probabilities((), n, k, seed=1), probabilities((), m, k, seed=2)
    torch.testing.assert_close(ck.symmetric_cross_entropy(p, q, backend=backend), _loops(p, q))


@pytest.mark.parametrize("batch,n,m,k", [((), 6, 9, 4), ((3,), 16, 16, 16)])
def test_swapping_arguments_transposes(batch, n, m, k):
    p, q = probabilities(batch, n, k, seed=3), probabilities(batch, m, k, seed=4)
    torch.testing.assert_close(ck.symmetric_cross_entropy(p, q), ck.symmetric_cross_entropy(q, p).mT)


def test_on_rwr_rows_is_a_negative_cross_entropy_maximal_near_the_diagonal():
    r = ref.rwr(graph((), 12, seed=5), 0.5)
    s = ck.symmetric_cross_entropy(r, r)
    assert torch.all(s < 0)
    # Gibbs: p·log q <= p·log p, so each row's own entry beats the average of the row.
    assert torch.all(s.diagonal() >= s.mean(-1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    # Moderate probabilities: d log p / dp = 1/p is too curved for finite differences near 0.
    p = probabilities((2,), 5, 6, seed=6, peak=1.0).requires_grad_()
    q = probabilities((2,), 4, 6, seed=7, peak=1.0).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ck.symmetric_cross_entropy(a, b, backend=backend), (p, q))


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_probabilities_stay_finite(backend):
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.0, 1.0], [0.25, 0.75]], dtype=torch.float64, requires_grad=True)
    s = ck.symmetric_cross_entropy(p, q, backend=backend)
    assert torch.isfinite(s).all()
    gp, gq = torch.autograd.grad(s.sum(), (p, q))
    assert torch.isfinite(gp).all() and torch.isfinite(gq).all()
    # 0 * log 0 counts as 0; 1 * log 0 is the (finite) log of the smallest normal float64.
    tiny_log = torch.log(torch.tensor(torch.finfo(torch.float64).tiny, dtype=torch.float64))
    torch.testing.assert_close(s[0, 0], tiny_log)


@pytest.mark.parametrize("batch,n,m", [((), 2, 2), ((3,), 37, 64), ((), 130, 100), ((2,), 256, 256)])
def test_cpu_float32_matches_float64_reference(batch, n, m):
    p = ref.rwr(graph(batch, n, seed=1), 0.5)[..., :, : min(n, m)]
    p = (p / p.sum(-1, keepdim=True)).requires_grad_()
    q = probabilities(batch, m, min(n, m), seed=2, peak=1.0).requires_grad_()
    grad = torch.randn(*batch, n, m, dtype=torch.float64)
    expected = ck.symmetric_cross_entropy(p, q, backend="reference")
    expected_grads = torch.autograd.grad(expected, (p, q), grad)
    p32, q32 = p.detach().float().requires_grad_(), q.detach().float().requires_grad_()
    out = ck.symmetric_cross_entropy(p32, q32, backend="cpu")
    grads = torch.autograd.grad(out, (p32, q32), grad.float())
    for got, exact in zip((out, *grads), (expected, *expected_grads), strict=True):
        assert rel_err(got, exact) <= 1e-4


def test_cpu_opcheck():
    p = probabilities((2,), 5, 6, seed=6, dtype=torch.float32).requires_grad_()
    q = probabilities((2,), 4, 6, seed=7, dtype=torch.float32).requires_grad_()
    torch.library.opcheck(torch.ops.csad.symmetric_cross_entropy.default, (p, q))
