"""estimator="ms", reduction=None and groups= (DESIGN.md §2, issue 16) on the reference and the public API."""

import math

import pytest
import torch
from _helpers import brute_force_mask, clustered, labels

import csad_kernels as ck
import csad_kernels.reference as ref

F64 = torch.float64


def _definition(m, omega, estimator, reduction, groups=None, w_pos=1.0, w_neg=None):
    """I of one problem by the §2 formulas, with Python loops over the pairs."""
    n = m.shape[0]
    w_neg = w_pos if w_neg is None else w_neg
    sides = {True: [], False: []}
    for i in range(n):
        for j in range(n):
            if groups is None or groups[i] == groups[j]:
                sides[bool(omega[i, j])].append(float(m[i, j]))
    total = 0.0
    for positive, xs in sides.items():
        if not xs:
            continue
        scale = 1.0 / len(xs) if reduction == "mean" else 1.0
        if estimator == "ms":
            w = w_pos if positive else w_neg
            sign = -1.0 if positive else 1.0
            total -= math.log1p(scale * sum(math.exp(sign * w * x) for x in xs)) / w
        elif estimator == "cs":
            sign = -1.0 if positive else 1.0
            total -= math.log1p(scale * sum(math.exp(sign * x) for x in xs))
        else:
            sign = -1.0 if positive else 1.0
            total -= scale * sum(math.log1p(math.exp(sign * x)) for x in xs)
    return total


@pytest.mark.parametrize("estimator", ["cs", "jsd", "ms"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("with_groups", [False, True])
def test_reference_matches_the_definition(estimator, reduction, with_groups):
    n = 9
    m = 0.7 * torch.randn(n, n, generator=torch.Generator().manual_seed(1), dtype=F64)
    bias = labels((), n, classes=4, k=2, seed=2)
    groups = labels((), n, classes=2, seed=3) if with_groups else None
    omega = brute_force_mask(bias, 1)
    ms = dict(w_pos=1.7, w_neg=0.6) if estimator == "ms" else {}
    got = ck.cross_sample_mi(
        m, bias, tolerance=1, estimator=estimator, reduction=reduction, groups=groups, backend="reference", **ms
    )
    expected = _definition(m, omega, estimator, reduction, groups, **ms)
    assert abs(float(got) - expected) <= 1e-12 * max(1.0, abs(expected))


def test_reduction_none_is_sum_for_ms_and_mean_otherwise():
    m = torch.randn(7, 7, dtype=F64)
    bias = labels((), 7)
    for estimator, default in (("ms", "sum"), ("cs", "mean"), ("jsd", "mean")):
        plain = ck.cross_sample_mi(m, bias, estimator=estimator, backend="reference")
        explicit = ck.cross_sample_mi(m, bias, estimator=estimator, reduction=default, backend="reference")
        other = ck.cross_sample_mi(
            m, bias, estimator=estimator, reduction={"sum": "mean", "mean": "sum"}[default], backend="reference"
        )
        assert torch.equal(plain, explicit) and not torch.allclose(plain, other)


def test_ms_w_neg_defaults_to_w_pos_and_ms_of_the_whole_estimator_uses_unscaled_scores():
    u, _ = clustered((), 10, 5, seed=0)
    v, _ = clustered((), 10, 5, seed=1)
    bias = labels((), 10)
    kw = dict(tau_y=8.0, tau_b=12.0, estimator="ms", backend="reference")
    x = ref.pair_scores(u, v, 1.0, 8.0, 12.0)
    whole = ck.cs_mutual_information(u, v, bias, alpha=1.5, **kw)
    assert torch.allclose(whole, ck.cross_sample_mi(x, bias, estimator="ms", w_pos=1.5, backend="reference"))
    both = ck.cs_mutual_information(u, v, bias, alpha=1.5, alpha_neg=1.5, **kw)
    assert torch.equal(whole, both)
    assert not torch.allclose(whole, ck.cs_mutual_information(u, v, bias, alpha=1.5, alpha_neg=0.5, **kw))


@pytest.mark.parametrize("estimator", ["cs", "jsd", "ms"])
def test_empty_sides_contribute_zero(estimator):
    m = torch.randn(6, 6, dtype=F64, requires_grad=True)
    ms = dict(w_pos=0.8) if estimator == "ms" else {}
    same = torch.zeros(6, dtype=torch.long)
    # all labels equal: ¬Ω is empty; groups all distinct: only the diagonal (in Ω) counts
    only_inside = ck.cross_sample_mi(m, same, estimator=estimator, backend="reference", **ms)
    inside = _definition(
        m.detach(), torch.ones(6, 6, dtype=torch.bool), estimator, ref.default_reduction(estimator, None), **ms
    )
    assert abs(float(only_inside.detach()) - inside) < 1e-12
    bias = torch.tensor([0, 1, 0, 1, 2, 2])
    diagonal = ck.cross_sample_mi(m, bias, estimator=estimator, groups=torch.arange(6), backend="reference", **ms)
    assert torch.isfinite(diagonal)
    (grad,) = torch.autograd.grad(diagonal, m)
    assert torch.equal(grad * torch.eye(6, dtype=F64), grad)  # off-diagonal pairs do not count
    # groups that put every pair of a side in different groups: that side is empty, not NaN
    nothing_outside = ck.cross_sample_mi(m, bias, estimator=estimator, groups=bias, backend="reference", **ms)
    assert (
        abs(
            float(nothing_outside)
            - _definition(
                m.detach(), brute_force_mask(bias, 0), estimator, ref.default_reduction(estimator, None), bias, **ms
            )
        )
        < 1e-12
    )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ms_is_stable_for_huge_scores(reduction):
    m = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], dtype=F64, requires_grad=True)
    out = ck.cross_sample_mi(
        m, torch.tensor([0, 1]), estimator="ms", reduction=reduction, w_pos=2.0, backend="reference"
    )
    (grad,) = torch.autograd.grad(out, m)
    assert torch.isfinite(out) and torch.isfinite(grad).all()


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("pairs", ["labels", "mask"])
def test_ms_and_groups_gradcheck_on_the_reference(similarity, pairs):
    u, _ = clustered((2,), 7, 4, seed=0)
    v, _ = clustered((2,), 7, 4, seed=1)
    bias = labels((2,), 7, classes=4, k=2, seed=1)
    spec = dict(bias=bias, tolerance=1) if pairs == "labels" else dict(mask=ref.pair_mask(bias, 1))
    groups = labels((2,), 7, classes=2, seed=4)
    scalars = [torch.tensor(x, dtype=F64, requires_grad=True) for x in (1.3, 0.7, 8.0, 12.0)]

    def estimator(a, b, alpha, alpha_neg, tau_y, tau_b):
        return ck.cs_mutual_information(
            a,
            b,
            **spec,
            alpha=alpha,
            alpha_neg=alpha_neg,
            tau_y=tau_y,
            tau_b=tau_b,
            groups=groups,
            similarity=similarity,
            estimator="ms",
            backend="reference",
        )

    assert torch.autograd.gradcheck(estimator, (u.requires_grad_(), v.requires_grad_(), *scalars))


def test_groups_equal_the_mask_restricted_to_same_group_pairs_for_cs():
    # with groups, cs over Ω ∩ G and ¬Ω ∩ G; explicit per-group computation agrees on batched inputs
    m = torch.randn(3, 8, 8, dtype=F64)
    bias = labels((3,), 8, seed=5)
    groups = labels((3,), 8, classes=2, seed=6)
    got = ck.cross_sample_mi(m, bias, groups=groups, backend="reference")
    for b in range(3):
        expected = _definition(m[b], brute_force_mask(bias[b], 0), "cs", "mean", groups[b])
        assert abs(float(got[b]) - expected) < 1e-12


BAD = {
    "ms w_pos = 0": (lambda m, b: ck.cross_sample_mi(m, b, estimator="ms", w_pos=0.0), ValueError, "w_pos must be > 0"),
    "ms w_neg < 0": (
        lambda m, b: ck.cross_sample_mi(m, b, estimator="ms", w_neg=-1.0),
        ValueError,
        "w_neg must be > 0",
    ),
    "ms w_pos tensor <= 0": (
        lambda m, b: ck.cross_sample_mi(m, b, estimator="ms", w_pos=torch.tensor(-1.0, dtype=F64)),
        ValueError,
        "w_pos must be > 0",
    ),
    "cs with w_pos": (lambda m, b: ck.cross_sample_mi(m, b, w_pos=2.0), ValueError, "w_pos applies to estimator='ms'"),
    "jsd with w_neg": (
        lambda m, b: ck.cross_sample_mi(m, b, estimator="jsd", w_neg=1.0),
        ValueError,
        "w_neg applies to estimator='ms'",
    ),
    "cs with alpha_neg": (
        lambda m, b: ck.cs_mutual_information(m, m, b, alpha=1.0, alpha_neg=1.0, tau_y=1.0, tau_b=1.0),
        ValueError,
        "alpha_neg applies to estimator='ms'",
    ),
    "ms alpha <= 0": (
        lambda m, b: ck.cs_mutual_information(m, m, b, alpha=-1.0, tau_y=1.0, tau_b=1.0, estimator="ms"),
        ValueError,
        "alpha must be > 0",
    ),
    "groups of floats": (
        lambda m, b: ck.cross_sample_mi(m, b, groups=b.double()),
        TypeError,
        "groups must hold integer",
    ),
    "groups wrong shape": (lambda m, b: ck.cross_sample_mi(m, b, groups=b[:3]), ValueError, "groups must have shape"),
    "groups not a tensor": (lambda m, b: ck.cross_sample_mi(m, b, groups=[0] * 6), TypeError, "groups must be an"),
    "groups on another device": (
        lambda m, b: ck.cross_sample_mi(m, b, groups=b.to("meta")),
        ValueError,
        "groups must be on",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_new_arguments_raise_clearly(case):
    call, error, message = BAD[case]
    with pytest.raises(error, match=message):
        call(torch.randn(6, 6, dtype=F64), labels((), 6))


def test_module_learns_positive_ms_scales_and_takes_groups():
    torch.manual_seed(0)
    module = ck.CrossSampleMI((4, 8, 4), estimator="ms", alpha=2.0, alpha_neg=0.5, backend="reference").double()
    w_pos, w_neg = module.scales()
    assert float(w_pos) == pytest.approx(2.0) and float(w_neg) == pytest.approx(0.5)
    hy, hb = torch.randn(10, 4, dtype=F64), torch.randn(10, 4, dtype=F64)
    bias, groups = labels((), 10), labels((), 10, classes=2, seed=1)
    value = module(hy, hb, bias, groups=groups)
    u, v = module.head_y(hy), module.head_b(hb)
    expected = ck.cs_mutual_information(
        u, v, bias, alpha=2.0, alpha_neg=0.5, tau_y=10.0, tau_b=10.0, groups=groups, estimator="ms", backend="reference"
    )
    assert torch.allclose(value, expected)
    optimiser = torch.optim.SGD(module.parameters(), lr=0.5)
    for _ in range(20):
        optimiser.zero_grad()
        (-module(hy, hb, bias, groups=groups)).backward()
        assert module.log_alpha.grad.abs() > 0 and module.log_alpha_neg.grad.abs() > 0
        optimiser.step()
        assert all(float(w) > 0 for w in module.scales())
    with pytest.raises(ValueError, match="alpha_neg applies to estimator='ms'"):
        ck.CrossSampleMI((4, 4), alpha_neg=1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ck.CrossSampleMI((4, 4), estimator="ms", alpha=0.0)
