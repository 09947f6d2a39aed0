"""softmax_adjacency(s, tau) (DESIGN.md §2) on every backend × dtype: rows are the softmax of tau·s, the float64
reference match (tests/_compare.py's rule) for the value and the gradients in s and tau, and the edge cases."""

import pytest
import torch
from _compare import (
    assert_matches_reference,
    backend_dtypes,
    backends,
    backends_computing_in,
    custom_op,
    device_of,
    most_precise_dtype,
    skip_unless_compiled,
)
from _helpers import clustered

import csad_kernels as ck
import csad_kernels.reference as ref

pytestmark = pytest.mark.usefixtures("ieee_float32_matmul")

# (batch, n, d): d of the embeddings whose cosine similarities are s
SHAPES = [((), 2, 1), ((3,), 37, 7), ((), 130, 33), ((2,), 256, 32), ((1,), 1024, 7), ((3,), 1024, 33)]


def sample_inputs(batch, n, d=6, seed=0, tau=7.0):
    """s: the cosine similarities of clustered rows (*batch, n, n), and tau, float64."""
    x, _ = clustered(batch, n, d, seed=seed)
    return {"s": ref.cosine_similarity(x, x), "tau": torch.tensor(tau, dtype=torch.float64)}


def _softmax(s, tau, backend):
    return ck.softmax_adjacency(s, tau, backend=backend)


@pytest.mark.parametrize("batch,n", [((), 2), ((), 37), ((2, 3), 16)])
@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_rows_are_probabilities_matching_softmax(batch, n, backend):
    s = sample_inputs(batch, n)["s"].to(device_of(backend))
    e = _softmax(s, 10.0, backend)
    assert e.shape == (*batch, n, n)
    assert torch.all(e > 0)
    torch.testing.assert_close(e.sum(-1), torch.ones_like(e.sum(-1)), rtol=0, atol=1e-12)
    expected = torch.exp(10 * s) / torch.exp(10 * s).sum(-1, keepdim=True)
    torch.testing.assert_close(e, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("batch,n,d", SHAPES)
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_matches_float64_reference(backend, dtype, batch, n, d):
    if n > 256:
        skip_unless_compiled(backend)
    assert_matches_reference(_softmax, sample_inputs(batch, n, d, seed=n), backend, dtype, seed=n)


@pytest.mark.parametrize("backend", backends())
def test_tensor_and_number_tau_agree(backend):
    s = sample_inputs((), 9)["s"].to(device_of(backend), most_precise_dtype(backend))
    torch.testing.assert_close(
        _softmax(s, torch.tensor(3.5, dtype=s.dtype, device=s.device), backend), _softmax(s, 3.5, backend)
    )


@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_gradcheck_in_s_and_tau(backend):
    s, tau = (t.to(device_of(backend)).requires_grad_() for t in sample_inputs((2,), 7, tau=4.0).values())
    assert torch.autograd.gradcheck(lambda a, t: _softmax(a, t, backend), (s, tau))


@pytest.mark.parametrize("backend", backends())
def test_large_tau_does_not_overflow(backend):
    s = sample_inputs((), 12)["s"].to(device_of(backend), torch.float32)
    e = _softmax(s, 1e4, backend)
    assert torch.isfinite(e).all()
    torch.testing.assert_close(e.sum(-1), torch.ones_like(e.sum(-1)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_opcheck(backend):
    s, tau = (
        t.to(device_of(backend), torch.float32).requires_grad_() for t in sample_inputs((2,), 9, tau=5.0).values()
    )
    torch.library.opcheck(custom_op(backend, "softmax_adjacency"), (s, tau))
