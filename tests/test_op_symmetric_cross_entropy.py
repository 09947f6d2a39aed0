"""symmetric_cross_entropy(p, q) (DESIGN.md §2) on every backend × dtype: the definition, the float64 reference
match (tests/_compare.py's rule) for the value and both gradients, and the edge cases (zero probabilities)."""

import pytest
import torch
from _compare import (
    assert_close_to_exact,
    assert_matches_reference,
    backend_dtypes,
    backends,
    backends_computing_in,
    custom_op,
    device_of,
    most_precise_dtype,
    skip_unless_compiled,
)
from _helpers import graph, probabilities

import csad_kernels as ck
import csad_kernels.reference as ref

pytestmark = pytest.mark.usefixtures("ieee_float32_matmul")

# (batch, n, m, k, source): p from RWR rows (peaked, with tiny entries) or softmax rows; square and ragged
CASES = [
    ((), 2, 2, 2, "rwr"),
    ((), 2, 3, 2, "softmax"),
    ((3,), 37, 20, 7, "softmax"),
    ((3,), 37, 64, 37, "rwr"),
    ((), 130, 100, 130, "softmax"),
    ((), 130, 100, 100, "rwr"),
    ((1,), 256, 256, 256, "softmax"),
    ((2,), 256, 256, 256, "rwr"),
    ((3,), 1024, 513, 33, "softmax"),
]


def sample_inputs(batch, n, m, k, source="softmax", seed=0):
    """Probability rows p (*batch, n, k) and q (*batch, m, k), float64: p are softmax rows or renormalised
    restart-walk rows (RWR's outputs, what the estimator feeds this op), q are softmax rows."""
    if source == "rwr":
        p = ref.rwr(graph(batch, n, seed=seed + 1), 0.5)[..., :, :k]
        p = p / p.sum(-1, keepdim=True)
        return {"p": p, "q": probabilities(batch, m, k, seed=seed + 2, peak=1.0)}
    return {"p": probabilities(batch, n, k, seed=seed + 1), "q": probabilities(batch, m, k, seed=seed + 2)}


def _sce(p, q, backend):
    return ck.symmetric_cross_entropy(p, q, backend=backend)


def _loops(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    out = torch.empty(p.shape[0], q.shape[0], dtype=p.dtype)
    for i in range(p.shape[0]):
        for j in range(q.shape[0]):
            out[i, j] = 0.5 * ((p[i] * q[j].log()).sum() + (q[j] * p[i].log()).sum())
    return out


@pytest.mark.parametrize("n,m,k", [(2, 2, 2), (7, 5, 11), (20, 31, 20)])
@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_matches_definition(n, m, k, backend):
    p, q = probabilities((), n, k, seed=1), probabilities((), m, k, seed=2)
    out = _sce(p.to(device_of(backend)), q.to(device_of(backend)), backend)
    torch.testing.assert_close(out.cpu(), _loops(p, q))


@pytest.mark.parametrize("batch,n,m,k,source", CASES)
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_matches_float64_reference(backend, dtype, batch, n, m, k, source):
    if n > 256:
        skip_unless_compiled(backend)
    assert_matches_reference(_sce, sample_inputs(batch, n, m, k, source, seed=n), backend, dtype, seed=n)


@pytest.mark.parametrize("batch,n,m,k", [((), 6, 9, 4), ((3,), 16, 16, 16)])
@pytest.mark.parametrize("backend", backends())
def test_swapping_arguments_transposes(backend, batch, n, m, k):
    p, q = (
        t.to(device_of(backend), most_precise_dtype(backend)) for t in sample_inputs(batch, n, m, k, seed=3).values()
    )
    torch.testing.assert_close(_sce(p, q, backend), _sce(q, p, backend).mT)


@pytest.mark.parametrize("backend", backends())
def test_on_rwr_rows_is_a_negative_cross_entropy_maximal_near_the_diagonal(backend):
    r = ref.rwr(graph((), 12, seed=5), 0.5).to(device_of(backend), most_precise_dtype(backend))
    s = _sce(r, r, backend)
    assert torch.all(s < 0)
    # Gibbs: p·log q <= p·log p, so each row's own entry beats the average of the row.
    assert torch.all(s.diagonal() >= s.mean(-1))


@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_gradcheck(backend):
    # Moderate probabilities: d log p / dp = 1/p is too curved for finite differences near 0.
    p = probabilities((2,), 5, 6, seed=6, peak=1.0).to(device_of(backend)).requires_grad_()
    q = probabilities((2,), 4, 6, seed=7, peak=1.0).to(device_of(backend)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: _sce(a, b, backend), (p, q))


@pytest.mark.parametrize("backend", backends_computing_in(torch.float64))
def test_zero_probabilities_stay_finite(backend):
    device = device_of(backend)
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64, device=device, requires_grad=True)
    q = torch.tensor([[0.0, 1.0], [0.25, 0.75]], dtype=torch.float64, device=device, requires_grad=True)
    s = _sce(p, q, backend)
    assert torch.isfinite(s).all()
    gp, gq = torch.autograd.grad(s.sum(), (p, q))
    assert torch.isfinite(gp).all() and torch.isfinite(gq).all()
    # 0 * log 0 counts as 0; 1 * log 0 is the (finite) log of the smallest normal float64.
    tiny_log = torch.log(torch.tensor(torch.finfo(torch.float64).tiny, dtype=torch.float64, device=device))
    torch.testing.assert_close(s[0, 0], tiny_log)


@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_zero_probabilities_use_the_clamped_log_of_the_compute_dtype(backend, dtype):
    # log(max(p, smallest normal)) clamps at the compute dtype's smallest normal, so the reference run in that
    # dtype is the target; the clamp also cuts the gradient of the clamped entries.
    p, q = sample_inputs((2,), 37, 20, 7, seed=1).values()
    p, q = p.to(dtype), q.to(dtype)
    p[:, 0, 1] = 0.0
    q[:, 3, 0] = 0.0
    runs = {}
    for name, run_backend in (("got", backend), ("target", "reference")):
        pp, qq = (t.to(device_of(backend)).requires_grad_() for t in (p, q))
        out = _sce(pp, qq, run_backend)
        runs[name] = (out, *torch.autograd.grad(out.sum(), (pp, qq)))
    for name, got, target in zip(("value", "dp", "dq"), runs["got"], runs["target"], strict=True):
        assert torch.isfinite(got).all(), name
        assert_close_to_exact(got, target, target, dtype, name=name)


@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_opcheck(backend):
    p, q = sample_inputs((2,), 5, 4, 6, seed=6).values()
    p, q = (t.to(device_of(backend), torch.float32).requires_grad_() for t in (p, q))
    torch.library.opcheck(custom_op(backend, "symmetric_cross_entropy"), (p, q))
