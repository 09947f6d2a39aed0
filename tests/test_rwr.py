import pytest
import torch
from _helpers import BACKENDS, graph, rel_err

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
@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_restart_walk_fixed_point(batch, n, c, backend):
    e = graph(batch, n, seed=n)
    steps = 400 if c > 0.8 else 200
    torch.testing.assert_close(ck.rwr(e, c, backend=backend), _fixed_point(e, c, steps), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch,n", [((), 5), ((4,), 30)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_linalg_solve_and_rows_sum_to_one(batch, n, backend):
    e = graph(batch, n, seed=1)
    c = 0.5
    eye = torch.eye(n, dtype=torch.float64)
    expected = (1 - c) * torch.linalg.solve(eye - c * e, eye.expand_as(e))
    r = ck.rwr(e, c, backend=backend)
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_includes_the_row_renormalisation(backend):
    e = graph((2,), 6, tau=3.0).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ck.rwr(a, 0.5, backend=backend), (e,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_returns_input_dtype(dtype, backend):
    e = graph((), 16, dtype=torch.float64)
    r = ck.rwr(e.to(dtype), backend=backend)
    assert r.dtype == dtype
    assert rel_err(r, ref.rwr(e)) <= 10 * torch.finfo(dtype).eps


@pytest.mark.parametrize("batch,n", [((), 2), ((3,), 37), ((), 130), ((2,), 256)])
@pytest.mark.parametrize("c", [0.5, 0.85])
def test_cpu_float32_matches_float64_reference(batch, n, c):
    e = graph(batch, n, seed=n).requires_grad_()
    grad = torch.randn(*batch, n, n, dtype=torch.float64)
    expected = ck.rwr(e, c, backend="reference")
    (expected_grad,) = torch.autograd.grad(expected, e, grad)
    e32 = e.detach().float().requires_grad_()
    out = ck.rwr(e32, c, backend="cpu")
    (grad32,) = torch.autograd.grad(out, e32, grad.float())
    assert rel_err(out, expected) <= 1e-4
    assert rel_err(grad32, expected_grad) <= 1e-4


def test_cpu_opcheck():
    e = graph((2,), 9, dtype=torch.float32).requires_grad_()
    torch.library.opcheck(torch.ops.csad.rwr.default, (e, 0.5))
