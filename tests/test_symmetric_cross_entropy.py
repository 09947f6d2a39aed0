import pytest
import torch
from _helpers import graph, probabilities

import csad_kernels as ck
import csad_kernels.reference as ref


def _loops(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    out = torch.empty(p.shape[0], q.shape[0], dtype=p.dtype)
    for i in range(p.shape[0]):
        for j in range(q.shape[0]):
            out[i, j] = 0.5 * ((p[i] * q[j].log()).sum() + (q[j] * p[i].log()).sum())
    return out


@pytest.mark.parametrize("n,m,k", [(2, 2, 2), (7, 5, 11), (20, 31, 20)])
def test_matches_definition(n, m, k):
    p, q = probabilities((), n, k, seed=1), probabilities((), m, k, seed=2)
    torch.testing.assert_close(ck.symmetric_cross_entropy(p, q, backend="reference"), _loops(p, q))


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


def test_gradcheck():
    # Moderate probabilities: d log p / dp = 1/p is too curved for finite differences near 0.
    p = probabilities((2,), 5, 6, seed=6, peak=1.0).requires_grad_()
    q = probabilities((2,), 4, 6, seed=7, peak=1.0).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ck.symmetric_cross_entropy(a, b, backend="reference"), (p, q))


def test_zero_probabilities_stay_finite():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.0, 1.0], [0.25, 0.75]], dtype=torch.float64, requires_grad=True)
    s = ck.symmetric_cross_entropy(p, q)
    assert torch.isfinite(s).all()
    gp, gq = torch.autograd.grad(s.sum(), (p, q))
    assert torch.isfinite(gp).all() and torch.isfinite(gq).all()
    # 0 * log 0 counts as 0; 1 * log 0 is the (finite) log of the smallest normal float64.
    tiny_log = torch.log(torch.tensor(torch.finfo(torch.float64).tiny, dtype=torch.float64))
    torch.testing.assert_close(s[0, 0], tiny_log)
