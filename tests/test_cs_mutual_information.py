import itertools

import pytest
import torch
from _helpers import clustered, labels, rel_err

import csad_kernels as ck
import csad_kernels.reference as ref

COMBOS = list(itertools.product(["joint", "content", "structural"], ["cs", "jsd"], ["mean", "sum"]))


def _inputs(batch, n, d, seed=0, dtype=torch.float64):
    u, groups = clustered(batch, n, d, seed=seed, dtype=dtype)
    v, _ = clustered(batch, n, d, seed=seed + 7, dtype=dtype)
    return u, v, groups


def _scalars(dtype=torch.float64, alpha=1.3, tau_y=4.0, tau_b=6.0):
    return {
        k: torch.tensor(x, dtype=dtype, requires_grad=True)
        for k, x in (("alpha", alpha), ("tau_y", tau_y), ("tau_b", tau_b))
    }


@pytest.mark.parametrize("similarity,estimator,reduction", COMBOS)
def test_gradcheck_every_input(similarity, estimator, reduction):
    u, v, groups = _inputs((2,), 7, 4)
    u.requires_grad_()
    v.requires_grad_()
    s = _scalars()

    def fn(u, v, alpha, tau_y, tau_b):
        return ck.cs_mutual_information(
            u,
            v,
            groups,
            alpha=alpha,
            tau_y=tau_y,
            tau_b=tau_b,
            similarity=similarity,
            estimator=estimator,
            reduction=reduction,
            backend="reference",
        )

    assert torch.autograd.gradcheck(fn, (u, v, s["alpha"], s["tau_y"], s["tau_b"]))


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
def test_equals_the_composition_of_the_single_ops(similarity):
    u, v, groups = _inputs((), 20, 6)
    alpha, tau_y, tau_b, c = 0.7, 10.0, 5.0, 0.3
    m = torch.zeros(20, 20, dtype=torch.float64)
    if similarity != "structural":
        m = m + ck.cosine_similarity(u, v)
    if similarity != "content":
        r_y = ck.rwr(ck.softmax_adjacency(ck.cosine_similarity(u, u), tau_y), c)
        r_b = ck.rwr(ck.softmax_adjacency(ck.cosine_similarity(v, v), tau_b), c)
        m = m + ck.symmetric_cross_entropy(r_y, r_b)
    expected = ck.cross_sample_mi(alpha * m, groups)
    out = ck.cs_mutual_information(u, v, groups, alpha=alpha, tau_y=tau_y, tau_b=tau_b, c=c, similarity=similarity)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_content_similarity_ignores_the_graph_temperatures(backend):
    u, v, groups = _inputs((), 12, 5)
    s = _scalars()
    out = ck.cs_mutual_information(u, v, groups, **s, similarity="content", backend=backend)
    grads = torch.autograd.grad(out, [s["alpha"], s["tau_y"], s["tau_b"]], allow_unused=True)
    assert grads[0] is not None and grads[0] != 0
    # the reference leaves them unused (None); fused kernels return zeros
    assert all(g is None or g == 0 for g in grads[1:])


@pytest.mark.parametrize("similarity,estimator,reduction", COMBOS)
def test_batched_equals_looped(similarity, estimator, reduction):
    u, v, _ = _inputs((2, 3), 9, 5)
    bias = labels((2, 3), 9, classes=4, k=3, seed=1)
    kw = dict(
        alpha=1.0, tau_y=10.0, tau_b=10.0, tolerance=1, similarity=similarity, estimator=estimator, reduction=reduction
    )
    batched = ck.cs_mutual_information(u, v, bias, **kw)
    looped = torch.stack(
        [
            torch.stack([ck.cs_mutual_information(u[i, j], v[i, j], bias[i, j], **kw) for j in range(3)])
            for i in range(2)
        ]
    )
    assert batched.shape == (2, 3)
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=0)


def test_labels_path_equals_mask_path():
    u, v, _ = _inputs((2,), 15, 8)
    bias = labels((2,), 15, classes=8, k=3, seed=4)
    mask = ref.pair_mask(bias, 1)
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0)
    torch.testing.assert_close(
        ck.cs_mutual_information(u, v, bias, tolerance=1, **kw), ck.cs_mutual_information(u, v, mask=mask, **kw)
    )


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
def test_single_bias_batch_is_finite_with_finite_gradients(similarity):
    u, v, _ = _inputs((), 10, 4)
    u.requires_grad_()
    v.requires_grad_()
    s = _scalars()
    out = ck.cs_mutual_information(u, v, torch.full((10,), 3), **s, similarity=similarity)
    assert torch.isfinite(out)
    grads = torch.autograd.grad(out, [u, v, s["alpha"]])
    assert all(torch.isfinite(g).all() for g in grads)


def test_estimator_separates_dependent_from_independent_pairs():
    # When v carries the bias (rows of one bias group share a direction), the critic can tell Ω
    # pairs from the rest and the estimate is larger than for v independent of the bias.
    n, d = 48, 8
    bias = torch.arange(n) % 4
    directions = torch.nn.functional.normalize(torch.randn(4, d, dtype=torch.float64), dim=-1)
    dependent = directions[bias] + 0.05 * torch.randn(n, d, dtype=torch.float64)
    independent = torch.randn(n, d, dtype=torch.float64)
    kw = dict(alpha=4.0, tau_y=10.0, tau_b=10.0, similarity="content")
    assert ck.cs_mutual_information(dependent, dependent, bias, **kw) > ck.cs_mutual_information(
        independent, independent, bias, **kw
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lower_precision_inputs(dtype):
    u, v, groups = _inputs((), 32, 8)
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0)
    out = ck.cs_mutual_information(u.to(dtype), v.to(dtype), groups, **kw)
    assert out.dtype == dtype
    expected = ck.cs_mutual_information(u.to(dtype).double(), v.to(dtype).double(), groups, **kw)
    # computed in fp32 inside: only the final rounding to the input dtype may differ
    assert rel_err(out, expected) <= max(torch.finfo(dtype).eps, 1e-5)


def test_public_estimator_compiles_with_fullgraph():
    u, v, groups = _inputs((2,), 16, 8, dtype=torch.float32)
    u.requires_grad_()
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0)
    compiled = torch.compile(lambda a, b, g: ck.cs_mutual_information(a, b, g, **kw), fullgraph=True)
    value = compiled(u, v, groups)
    (grad,) = torch.autograd.grad(value.sum(), u)
    u64 = u.detach().double().requires_grad_()
    expected = ck.cs_mutual_information(u64, v.double(), groups, **kw)
    (expected_grad,) = torch.autograd.grad(expected.sum(), u64)
    assert rel_err(value, expected) <= 1e-5
    assert rel_err(grad, expected_grad) <= 1e-4
