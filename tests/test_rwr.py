import pytest
import torch
from _helpers import graph, rel_err

import csad_kernels as ck
import csad_kernels.reference as ref


def _fixed_point(e: torch.Tensor, c: float, steps: int = 200) -> torch.Tensor:
    """All rows at once of ``r = c r E + (1 - c) e_i``, iterated from ``r = e_i``."""
    eye = torch.eye(e.shape[-1], dtype=e.dtype).expand_as(e)
    r = eye.clone()
    for _ in range(steps):
        r = c * r @ e + (1 - c) * eye
    return r


@pytest.mark.parametrize("batch,n", [((), 2), ((), 37), ((3,), 64), ((2, 2), 17)])
@pytest.mark.parametrize("c", [0.5, 0.15, 0.85])
def test_equals_restart_walk_fixed_point(batch, n, c):
    e = graph(batch, n, seed=n)
    steps = 400 if c > 0.8 else 200
    torch.testing.assert_close(ck.rwr(e, c, backend="reference"), _fixed_point(e, c, steps), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch,n", [((), 5), ((4,), 30)])
def test_equals_linalg_solve_and_rows_sum_to_one(batch, n):
    e = graph(batch, n, seed=1)
    c = 0.5
    eye = torch.eye(n, dtype=torch.float64)
    expected = (1 - c) * torch.linalg.solve(eye - c * e, eye.expand_as(e))
    r = ck.rwr(e, c, backend="reference")
    torch.testing.assert_close(r, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(r.sum(-1), torch.ones(batch + (n,), dtype=r.dtype), rtol=0, atol=1e-12)
    assert torch.all(r > 0)


def test_orientation_is_distinguishable_on_clustered_graphs():
    # The walk from node i follows E's rows: R = (1-c)(I - cE)^-1, not its transpose's inverse.
    # On clustered inputs the two differ clearly, so the tests above can catch an orientation slip.
    e = graph((), 24, seed=3)
    r = ck.rwr(e, 0.5)
    wrong = ref.rwr(e.mT / e.mT.sum(-1, keepdim=True), 0.5)
    assert rel_err(wrong, r) > 1e-2


def test_gradcheck_includes_the_row_renormalisation():
    e = graph((2,), 6, tau=3.0).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ck.rwr(a, 0.5, backend="reference"), (e,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_low_precision_returns_input_dtype(dtype):
    e = graph((), 16, dtype=torch.float64)
    r = ck.rwr(e.to(dtype))
    assert r.dtype == dtype
    assert rel_err(r, ref.rwr(e)) <= 10 * torch.finfo(dtype).eps
