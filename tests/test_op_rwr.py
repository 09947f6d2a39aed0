"""rwr(e, c) (DESIGN.md §2) on every backend × dtype: the restart walk's fixed point, the float64 reference match
(tests/_compare.py's rule) for the value and the gradient, and the edge cases."""

import pytest
import torch
from _compare import (
    assert_matches_reference,
    backend_dtypes,
    backends,
    backends_computing_in,
    custom_op,
    device_of,
    skip_unless_compiled,
)
from _helpers import graph

import csad_kernels as ck
import csad_kernels.reference as ref

pytestmark = pytest.mark.usefixtures("ieee_float32_matmul")

# (batch, n, c): every restart probability with small and ragged n, one and two batch dims
CASES = [
    ((), 2, 0.5),
    ((3,), 37, 0.5),
    ((), 64, 0.15),
    ((), 130, 0.85),
    ((3,), 130, 0.5),
    ((2,), 256, 0.5),
    ((2,), 256, 0.85),
    ((1,), 1024, 0.15),
    ((3,), 1024, 0.5),
]


def sample_inputs(batch, n, seed=0, tau=10.0):
    """e: a row-stochastic softmax graph of clustered embeddings (*batch, n, n), float64."""
    return {"e": graph(batch, n, tau=tau, seed=seed)}


def _fixed_point(e: torch.Tensor, c: float, steps: int = 200) -> torch.Tensor:
    """All rows at once of ``r = c r E + (1 - c) e_i``, iterated from ``r = e_i``."""
    eye = torch.eye(e.shape[-1], dtype=e.dtype, device=e.device).expand_as(e)
    r = eye.clone()
    for _ in range(steps):
        r = c * r @ e + (1 - c) * eye
    return r


@pytest.mark.parametrize("batch,n", [((), 2), ((), 37), ((3,), 64), ((2, 2), 17)])
@pytest.mark.parametrize("c", [0.5, 0.15, 0.85])
@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_equals_restart_walk_fixed_point(batch, n, c, backend):
    e = sample_inputs(batch, n, seed=n)["e"].to(device_of(backend))
    steps = 400 if c > 0.8 else 200
    torch.testing.assert_close(ck.rwr(e, c, backend=backend), _fixed_point(e, c, steps), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch,n", [((), 5), ((4,), 30)])
@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_equals_linalg_solve_and_rows_sum_to_one(batch, n, backend):
    e = sample_inputs(batch, n, seed=1)["e"].to(device_of(backend))
    c = 0.5
    eye = torch.eye(n, dtype=torch.float64, device=e.device)
    expected = (1 - c) * torch.linalg.solve(eye - c * e, eye.expand_as(e))
    r = ck.rwr(e, c, backend=backend)
    torch.testing.assert_close(r, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(r.sum(-1), torch.ones_like(r.sum(-1)), rtol=0, atol=1e-12)
    assert torch.all(r > 0)


def test_orientation_is_distinguishable_on_clustered_graphs():
    # The walk from node i follows E's rows: R = (1-c)(I - cE)^-1, not its transpose's inverse.
    # On clustered inputs the two differ clearly, so the tests here can catch an orientation slip.
    e = graph((), 24, seed=3)
    r = ref.rwr(e, 0.5)
    wrong = ref.rwr(e.mT / e.mT.sum(-1, keepdim=True), 0.5)
    assert (wrong - r).norm() > 1e-2 * r.norm()


@pytest.mark.parametrize("batch,n,c", CASES)
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_matches_float64_reference(backend, dtype, batch, n, c):
    if n > 256:
        skip_unless_compiled(backend)
    assert_matches_reference(
        lambda e, backend: ck.rwr(e, c, backend=backend), sample_inputs(batch, n, seed=n), backend, dtype, seed=n
    )


@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_gradcheck_includes_the_row_renormalisation(backend):
    e = sample_inputs((2,), 6, tau=3.0)["e"].to(device_of(backend)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ck.rwr(a, 0.5, backend=backend), (e,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", backends())
def test_low_precision_is_computed_in_float32_and_returned_in_input_dtype(backend, dtype):
    e = sample_inputs((), 16)["e"]
    r = ck.rwr(e.to(device_of(backend), dtype), backend=backend)
    assert r.dtype == dtype
    # computed in float32 from the rounded graph: only the rounding of the input and of the result may differ
    expected = ref.rwr(e.to(dtype).double())
    torch.testing.assert_close(r.cpu().double(), expected, rtol=0, atol=torch.finfo(dtype).eps)


@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_opcheck(backend):
    e = sample_inputs((2,), 9)["e"].to(device_of(backend), torch.float32).requires_grad_()
    torch.library.opcheck(custom_op(backend, "rwr"), (e, 0.5))
