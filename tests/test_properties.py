"""Property tests over shapes: N from 2 to 70, d from 1 to 40, clustered inputs."""

import torch
from _compare import assert_close_to_exact
from _helpers import brute_force_mask, clustered
from hypothesis import given, settings
from hypothesis import strategies as st

import csad_kernels as ck
import csad_kernels.reference as ref

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
sizes = st.integers(2, 70)
dims = st.integers(1, 40)
seeds = st.integers(0, 2**16)


def _problem(n, d, seed, centres):
    u, groups = clustered((), n, d, centres=centres, seed=seed)
    v, _ = clustered((), n, d, centres=centres, seed=seed + 1)
    return u, v, groups


@SETTINGS
@given(n=sizes, d=dims, seed=seeds, tau=st.floats(0.5, 30.0), c=st.floats(0.05, 0.95))
def test_rwr_rows_are_distributions_solving_the_restart_equation(n, d, seed, tau, c):
    x, _ = clustered((), n, d, seed=seed)
    e = ck.softmax_adjacency(ck.cosine_similarity(x, x), tau)
    r = ck.rwr(e, c)
    torch.testing.assert_close(r.sum(-1), torch.ones(n, dtype=r.dtype), rtol=0, atol=1e-10)
    assert torch.all(r >= 0)
    eye = torch.eye(n, dtype=r.dtype)
    torch.testing.assert_close(r, c * r @ e + (1 - c) * eye, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(n=sizes, m=sizes, k=st.integers(1, 40), seed=seeds)
def test_symmetric_cross_entropy_is_symmetric(n, m, k, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(m, k, generator=g, dtype=torch.float64), -1)
    torch.testing.assert_close(ck.symmetric_cross_entropy(p, q), ck.symmetric_cross_entropy(q, p).mT)


@SETTINGS
@given(
    n=sizes,
    d=dims,
    seed=seeds,
    centres=st.integers(1, 5),
    classes=st.integers(1, 5),
    similarity=st.sampled_from(["joint", "content", "structural"]),
)
def test_cs_bounds_jsd_and_everything_is_finite(n, d, seed, centres, classes, similarity):
    u, v, _ = _problem(n, d, seed, centres)
    u.requires_grad_()
    bias = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0, similarity=similarity)
    cs = ck.cs_mutual_information(u, v, bias, estimator="cs", **kw)
    jsd = ck.cs_mutual_information(u, v, bias, estimator="jsd", **kw)
    assert cs <= jsd + 1e-12
    (grad,) = torch.autograd.grad(cs, u)
    assert torch.isfinite(cs) and torch.isfinite(grad).all()


@SETTINGS
@given(n=sizes, k=st.integers(1, 3), tolerance=st.integers(0, 2), seed=seeds)
def test_labels_build_the_same_pairs_as_the_definition(n, k, tolerance, seed):
    bias = torch.randint(0, 8, (n, k), generator=torch.Generator().manual_seed(seed))
    mask = ref.pair_mask(bias, tolerance)
    assert torch.equal(mask, brute_force_mask(bias, tolerance))
    assert torch.all(mask.diagonal()) and torch.equal(mask, mask.mT)


@SETTINGS
@given(n=sizes, d=dims, m=sizes, seed=seeds)
def test_cpu_cosine_similarity_matches_reference(n, d, m, seed):
    x, _ = clustered((), n, d, seed=seed, dtype=torch.float32)
    y, _ = clustered((), m, d, seed=seed + 1, dtype=torch.float32)
    exact, plain = ref.cosine_similarity(x.double(), y.double()), ref.cosine_similarity(x, y)
    assert_close_to_exact(ck.cosine_similarity(x, y, backend="cpu"), exact, plain, torch.float32)
