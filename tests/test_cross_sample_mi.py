import pytest
import torch
from _helpers import BACKENDS, brute_force_mask, clustered, labels, rel_err

import csad_kernels as ck
import csad_kernels.reference as ref


def _scores(batch, n, scale=2.0, seed=0):
    u, _ = clustered(batch, n, 5, seed=seed)
    v, _ = clustered(batch, n, 5, seed=seed + 1)
    return scale * ref.cosine_similarity(u, v) + torch.randn(*batch, n, n, dtype=torch.float64)


def _direct(m, omega, estimator, reduction):
    """The estimators of Eq. 1-2 written out plainly for one problem (no log-sum-exp)."""
    agg = torch.mean if reduction == "mean" else torch.sum
    inside, outside = m[omega], m[~omega]
    if estimator == "cs":
        pos = torch.log1p(agg(torch.exp(-inside))) if inside.numel() else 0.0
        neg = torch.log1p(agg(torch.exp(outside))) if outside.numel() else 0.0
    else:
        pos = agg(torch.nn.functional.softplus(-inside)) if inside.numel() else 0.0
        neg = agg(torch.nn.functional.softplus(outside)) if outside.numel() else 0.0
    return -pos - neg


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n", [2, 13, 40])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_plain_formula(estimator, reduction, n, backend):
    m = _scores((), n, seed=n)
    bias = labels((), n, classes=3, seed=n)
    out = ck.cross_sample_mi(m, bias, estimator=estimator, reduction=reduction, backend=backend)
    torch.testing.assert_close(out, _direct(m, brute_force_mask(bias, 0), estimator, reduction), rtol=1e-12, atol=0)


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(estimator, reduction, backend):
    m = _scores((2,), 6).requires_grad_()
    bias = labels((2,), 6, classes=2)
    fn = lambda a: ck.cross_sample_mi(a, bias, estimator=estimator, reduction=reduction, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (m,))


def test_cs_is_a_lower_bound_of_jsd_with_means():
    # Lemma 1 of the supplement (Jensen on the concave log(1 + x)).
    for seed in range(20):
        m = 3 * _scores((4,), 24, seed=seed)
        bias = labels((4,), 24, classes=1 + seed % 4, seed=seed)
        cs = ck.cross_sample_mi(m, bias, estimator="cs")
        jsd = ck.cross_sample_mi(m, bias, estimator="jsd")
        assert torch.all(cs <= jsd + 1e-12)


def test_with_sums_the_bound_reverses():
    # log(1 + sum x) <= sum log(1 + x), so with reduction="sum" I_CS >= I_JSD: the lemma is about means.
    m = _scores((4,), 24)
    bias = labels((4,), 24)
    cs = ck.cross_sample_mi(m, bias, estimator="cs", reduction="sum")
    jsd = ck.cross_sample_mi(m, bias, estimator="jsd", reduction="sum")
    assert torch.all(cs >= jsd)


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_negative_side_contributes_zero_with_finite_gradients(estimator, reduction, backend):
    m = _scores((), 9).requires_grad_()
    same_bias = torch.zeros(9, dtype=torch.int64)  # every pair shares the bias: ¬Ω is empty
    out = ck.cross_sample_mi(m, same_bias, estimator=estimator, reduction=reduction, backend=backend)
    assert torch.isfinite(out)
    (grad,) = torch.autograd.grad(out, m)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(out, _direct(m.detach(), torch.ones(9, 9, dtype=torch.bool), estimator, reduction))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_positive_side_from_a_mask_contributes_zero(backend):
    m = _scores((), 5).requires_grad_()
    out = ck.cross_sample_mi(m, mask=torch.zeros(5, 5, dtype=torch.bool), backend=backend)
    (grad,) = torch.autograd.grad(out, m)
    assert torch.isfinite(out) and torch.isfinite(grad).all()
    torch.testing.assert_close(out, _direct(m.detach(), torch.zeros(5, 5, dtype=torch.bool), "cs", "mean"))


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_and_mask_paths_agree(estimator, backend):
    m = _scores((3,), 11).requires_grad_()
    bias = labels((3,), 11, classes=4, k=2, seed=2)
    mask = torch.stack([brute_force_mask(b, 1) for b in bias])
    by_labels = ck.cross_sample_mi(m, bias, tolerance=1, estimator=estimator, backend=backend)
    by_mask = ck.cross_sample_mi(m, mask=mask, estimator=estimator, backend=backend)
    torch.testing.assert_close(by_labels, by_mask, rtol=0, atol=0)
    g_labels, g_mask = (torch.autograd.grad(x.sum(), m)[0] for x in (by_labels, by_mask))
    torch.testing.assert_close(g_labels, g_mask, rtol=0, atol=0)


def test_tolerance_rule_on_three_labels():
    # Colored MNIST: 3 colour channels in 8 bins, pairs whose every channel differs by <= 1.
    bias = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 0, 0], [0, 3, 0], [1, 0, 1]])
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 1],
            [1, 1, 1, 0, 1],
            [0, 1, 1, 0, 1],
            [0, 0, 0, 1, 0],
            [1, 1, 1, 0, 1],
        ],
        dtype=torch.bool,
    )
    torch.testing.assert_close(ref.pair_mask(bias, 1), expected)
    torch.testing.assert_close(ref.pair_mask(bias, 0), torch.eye(5, dtype=torch.bool))
    torch.testing.assert_close(ref.pair_mask(bias, 3), torch.ones(5, 5, dtype=torch.bool))
    m = _scores((), 5)
    torch.testing.assert_close(ck.cross_sample_mi(m, bias, tolerance=1), ck.cross_sample_mi(m, mask=expected))


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_scores_do_not_overflow(estimator, reduction, backend):
    m = (1e4 * torch.sign(torch.randn(16, 16))).requires_grad_()
    bias = labels((), 16, classes=2)
    out = ck.cross_sample_mi(m, bias, estimator=estimator, reduction=reduction, backend=backend)
    (grad,) = torch.autograd.grad(out, m)
    assert torch.isfinite(out) and torch.isfinite(grad).all()
    expected = ck.cross_sample_mi(m.detach().double(), bias, estimator=estimator, reduction=reduction)
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=0)


def test_batched_equals_looped():
    m = _scores((2, 3), 10)
    bias = labels((2, 3), 10, classes=3)
    batched = ck.cross_sample_mi(m, bias)
    looped = torch.stack([torch.stack([ck.cross_sample_mi(m[i, j], bias[i, j]) for j in range(3)]) for i in range(2)])
    torch.testing.assert_close(batched, looped, rtol=1e-14, atol=0)


@pytest.mark.parametrize("batch,n", [((), 2), ((3,), 37), ((), 130), ((2,), 256)])
@pytest.mark.parametrize("estimator,reduction", [("cs", "mean"), ("cs", "sum"), ("jsd", "mean"), ("jsd", "sum")])
def test_cpu_float32_matches_float64_reference(batch, n, estimator, reduction):
    m = _scores(batch, n, seed=n).requires_grad_()
    bias = labels(batch, n, classes=8, k=3, seed=n)
    kw = dict(tolerance=1, estimator=estimator, reduction=reduction)
    expected = ck.cross_sample_mi(m, bias, **kw, backend="reference")
    (expected_grad,) = torch.autograd.grad(expected.sum(), m)
    m32 = m.detach().float().requires_grad_()
    out = ck.cross_sample_mi(m32, bias, **kw, backend="cpu")
    (grad,) = torch.autograd.grad(out.sum(), m32)
    assert rel_err(out, expected) <= 1e-4
    assert rel_err(grad, expected_grad) <= 1e-4


def test_cpu_opcheck():
    m = _scores((2,), 7).float().requires_grad_()
    labels_k = labels((2,), 7, classes=3).unsqueeze(-1)
    for estimator in ("cs", "jsd"):
        args = (m, labels_k, None, 0, estimator, "mean")
        torch.library.opcheck(torch.ops.csad.cross_sample_mi.default, args)
