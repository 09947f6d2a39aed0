"""cross_sample_mi(m, bias | mask, ...) (DESIGN.md §2): the loss from pair scores, on every backend × dtype.

The estimators cs, jsd and ms (with w_pos, w_neg), reductions mean, sum and None, Ω from single labels, label
vectors with a tolerance or a mask, groups=: the definition (Python loops over pairs), the float64 reference
match (tests/_compare.py's rule) for the value and the gradients (m, w_pos, w_neg), empty sides, huge scores,
and the argument errors.
"""

import math

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
    on,
    skip_unless_compiled,
    skip_unless_on_gpu,
)
from _helpers import brute_force_mask, clustered, labels

import csad_kernels as ck
import csad_kernels.reference as ref

F64 = torch.float64
OPTIONS = [("cs", "mean"), ("cs", "sum"), ("jsd", "mean"), ("jsd", "sum")]
SOURCES = ["tolerance", "labels", "mask"]


def sample_scores(batch, n, scale=3.0, seed=0):
    """Pair scores like a critic's (clustered cosine similarities plus noise), (*batch, n, n), float64 values
    that float32 holds exactly (both sides of a comparison see the same input)."""
    u, _ = clustered(batch, n, 5, seed=seed + n)
    v, _ = clustered(batch, n, 5, seed=seed + n + 1)
    noise = torch.randn(*batch, n, n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return (scale * ref.cosine_similarity(u, v) + noise).float().double()


def sample_pairs(source, batch, n, seed=0, groups=False):
    """Ω (and groups): single labels, 3-label vectors with tolerance 1, or a mask; groups of two values."""
    if source == "labels":
        spec = {"bias": labels(batch, n, classes=3, seed=n + seed)}
    elif source == "tolerance":
        spec = {"bias": labels(batch, n, classes=5, k=3, seed=n + seed), "tolerance": 1}
    else:
        spec = {"mask": ref.pair_mask(labels(batch, n, classes=4, k=2, seed=n + seed), 1)}
    if groups:
        spec["groups"] = labels(batch, n, classes=2, seed=n + 11)
    return spec


def _loss(spec, **options):
    """The op as fn(m, [w_pos, [w_neg]], backend=...), Ω and groups moved to m's device."""

    def fn(m, *scales, backend):
        ms = dict(zip(("w_pos", "w_neg"), scales, strict=False))
        return ck.cross_sample_mi(m, **on(m.device.type, spec), **options, **ms, backend=backend)

    return fn


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
        sign = -1.0 if positive else 1.0
        if estimator == "ms":
            w = w_pos if positive else w_neg
            total -= math.log1p(scale * sum(math.exp(sign * w * x) for x in xs)) / w
        elif estimator == "cs":
            total -= math.log1p(scale * sum(math.exp(sign * x) for x in xs))
        else:
            total -= scale * sum(math.log1p(math.exp(sign * x)) for x in xs)
    return total


# ---- the definition


@pytest.mark.parametrize("n,source", [(2, "labels"), (9, "tolerance"), (13, "labels"), (40, "tolerance")])
@pytest.mark.parametrize("with_groups", [False, True])
@pytest.mark.parametrize("estimator", ["cs", "jsd", "ms"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_matches_the_definition(backend, reduction, estimator, with_groups, n, source):
    m = sample_scores((), n, seed=n)
    spec = sample_pairs(source, (), n, groups=with_groups)
    ms = dict(w_pos=1.7, w_neg=0.6) if estimator == "ms" else {}
    got = _loss(spec, estimator=estimator, reduction=reduction, **ms)(m.to(device_of(backend)), backend=backend)
    omega = brute_force_mask(spec["bias"].reshape(n, -1), spec.get("tolerance", 0))
    expected = _definition(m, omega, estimator, reduction, spec.get("groups"), **ms)
    assert abs(float(got) - expected) <= 1e-12 * max(1.0, abs(expected))


@pytest.mark.parametrize("backend", backends())
def test_reduction_none_is_sum_for_ms_and_mean_otherwise(backend):
    m = sample_scores((), 7).to(device_of(backend), most_precise_dtype(backend))
    bias = labels((), 7).to(m.device)
    for estimator, default in (("ms", "sum"), ("cs", "mean"), ("jsd", "mean")):
        plain = ck.cross_sample_mi(m, bias, estimator=estimator, backend=backend)
        explicit = ck.cross_sample_mi(m, bias, estimator=estimator, reduction=default, backend=backend)
        other = ck.cross_sample_mi(
            m, bias, estimator=estimator, reduction={"sum": "mean", "mean": "sum"}[default], backend=backend
        )
        assert torch.equal(plain, explicit) and not torch.allclose(plain, other)


@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_groups_restrict_both_sides_to_same_group_pairs(backend):
    m = torch.randn(3, 8, 8, dtype=F64)
    bias, groups = labels((3,), 8, seed=5), labels((3,), 8, classes=2, seed=6)
    got = _loss({"bias": bias, "groups": groups})(m.to(device_of(backend)), backend=backend)
    for b in range(3):
        expected = _definition(m[b], brute_force_mask(bias[b], 0), "cs", "mean", groups[b])
        assert abs(float(got[b]) - expected) < 1e-12


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


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("backend", backends())
def test_labels_and_mask_paths_agree(backend, estimator):
    dtype = most_precise_dtype(backend)
    m = sample_scores((3,), 11).to(device_of(backend), dtype).requires_grad_()
    bias = labels((3,), 11, classes=4, k=2, seed=2)
    single = bias[..., 0]
    runs = {
        "labels with a tolerance": {"bias": bias, "tolerance": 1},
        "mask": {"mask": torch.stack([brute_force_mask(b, 1) for b in bias])},
        "single labels": {"bias": single},
        "single labels as a label axis": {"bias": single.unsqueeze(-1)},
    }
    results = {}
    for name, spec in runs.items():
        out = _loss(spec, estimator=estimator)(m, backend=backend)
        results[name] = (out, torch.autograd.grad(out.sum(), m)[0])
    for a, b in (("labels with a tolerance", "mask"), ("single labels", "single labels as a label axis")):
        for got, want in zip(results[a], results[b], strict=True):
            assert_close_to_exact(got, want, want, dtype, name=f"{a} vs {b}")


@pytest.mark.parametrize("backend", backends())
def test_batched_equals_looped(backend):
    dtype = most_precise_dtype(backend)
    m = sample_scores((2, 3), 10).to(device_of(backend), dtype)
    bias = labels((2, 3), 10, classes=3).to(m.device)
    batched = ck.cross_sample_mi(m, bias, backend=backend)
    looped = torch.stack(
        [torch.stack([ck.cross_sample_mi(m[i, j], bias[i, j], backend=backend) for j in range(3)]) for i in range(2)]
    )
    assert_close_to_exact(batched, looped, looped, dtype)


@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_cs_is_a_lower_bound_of_jsd_with_means(backend):
    # Lemma 1 of the supplement (Jensen on the concave log(1 + x)).
    for seed in range(20):
        m = 3 * sample_scores((4,), 24, seed=seed).to(device_of(backend))
        spec = {"bias": labels((4,), 24, classes=1 + seed % 4, seed=seed)}
        cs = _loss(spec, estimator="cs")(m, backend=backend)
        jsd = _loss(spec, estimator="jsd")(m, backend=backend)
        assert torch.all(cs <= jsd + 1e-12)


@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_with_sums_the_bound_reverses(backend):
    # log(1 + sum x) <= sum log(1 + x), so with reduction="sum" I_CS >= I_JSD: the lemma is about means.
    m = sample_scores((4,), 24).to(device_of(backend))
    spec = {"bias": labels((4,), 24)}
    assert torch.all(
        _loss(spec, estimator="cs", reduction="sum")(m, backend=backend)
        >= _loss(spec, estimator="jsd", reduction="sum")(m, backend=backend)
    )


@pytest.mark.parametrize("backend", backends_computing_in(F64))
@pytest.mark.parametrize("estimator,with_w_neg", [("cs", False), ("jsd", False), ("ms", False), ("ms", True)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradcheck(backend, estimator, with_w_neg, reduction):
    device = device_of(backend)
    m = torch.randn(2, 7, 7, generator=torch.Generator().manual_seed(3), dtype=F64).to(device).requires_grad_()
    scales = [torch.tensor(x, dtype=F64, device=device, requires_grad=True) for x in (1.4, 0.6)[: 1 + with_w_neg]]
    fn = _loss(sample_pairs("tolerance", (2,), 7, groups=True), estimator=estimator, reduction=reduction)
    inputs = (m, *scales) if estimator == "ms" else (m,)
    assert torch.autograd.gradcheck(lambda *x: fn(*x, backend=backend), inputs)


# ---- against the float64 reference

# (batch, n, estimator, reduction, source, groups, w_pos, w_neg): every N with every cs/jsd option, the Ω source
# rotating; then ms with and without groups and w_neg, and cs/jsd with groups. N > 256 runs where compiled.
CASES = [
    (batch, n, estimator, reduction, SOURCES[(i + j) % 3], False, None, None)
    for i, (batch, n) in enumerate(
        [((1,), 2), ((3,), 37), ((1,), 64), ((3,), 100), ((3,), 130), ((1,), 256), ((2,), 1024)]
    )
    for j, (estimator, reduction) in enumerate(OPTIONS)
] + [
    ((2,), 37, "ms", None, "labels", False, 0.7, 1.9),
    ((1,), 37, "ms", "mean", "mask", True, 1.3, None),
    ((3,), 64, "ms", "sum", "tolerance", True, 0.4, 2.5),
    ((2,), 130, "ms", "mean", "labels", True, 2.0, 0.5),
    ((1,), 130, "ms", None, "tolerance", False, 1.0, None),
    ((2,), 37, "cs", "mean", "tolerance", True, None, None),
    ((1,), 130, "cs", "sum", "mask", True, None, None),
    ((2,), 64, "jsd", "sum", "labels", True, None, None),
    ((1,), 130, "jsd", None, "labels", True, None, None),
    ((2, 3), 21, "cs", "mean", "tolerance", True, None, None),
    ((2, 3), 21, "cs", "sum", "tolerance", True, None, None),
    ((2, 3), 21, "jsd", "mean", "tolerance", True, None, None),
    ((2, 3), 21, "jsd", "sum", "tolerance", True, None, None),
]


def _scale_inputs(w_pos, w_neg):
    return {k: torch.tensor(x, dtype=F64) for k, x in (("w_pos", w_pos), ("w_neg", w_neg)) if x is not None}


@pytest.mark.parametrize("batch,n,estimator,reduction,source,groups,w_pos,w_neg", CASES)
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_matches_float64_reference(backend, dtype, batch, n, estimator, reduction, source, groups, w_pos, w_neg):
    if n > 256:
        skip_unless_compiled(backend)
    fn = _loss(sample_pairs(source, batch, n, groups=groups), estimator=estimator, reduction=reduction)
    inputs = {"m": sample_scores(batch, n), **_scale_inputs(w_pos, w_neg)}
    assert_matches_reference(fn, inputs, backend, dtype, seed=n)


@pytest.mark.parametrize("source", ["tolerance", "mask", "groups", "mask+groups", "groups empty outside"])
@pytest.mark.parametrize("reduction", [None, "mean", "sum"])
@pytest.mark.parametrize("with_w_neg", [False, True])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_ms_every_pair_source_and_reduction_matches_float64_reference(backend, dtype, source, reduction, with_w_neg):
    skip_unless_compiled(backend, "the product of the ms options")
    u, _ = clustered((3,), 29, 5, seed=11)
    v, _ = clustered((3,), 29, 5, seed=12)
    spec = {
        "tolerance": sample_pairs("tolerance", (3,), 29),
        "mask": sample_pairs("mask", (3,), 29),
        "groups": sample_pairs("tolerance", (3,), 29, groups=True),
        "mask+groups": sample_pairs("mask", (3,), 29, groups=True),
        # groups = the bias labels: every counted pair is in Ω, ¬Ω is empty
        "groups empty outside": {"bias": labels((3,), 29, classes=3), "groups": labels((3,), 29, classes=3)},
    }[source]
    inputs = {"m": ref.pair_scores(u, v, 1.0, 8.0, 12.0), **_scale_inputs(1.7, 0.4 if with_w_neg else None)}
    assert_matches_reference(_loss(spec, estimator="ms", reduction=reduction), inputs, backend, dtype)


@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_ms_scales_as_numbers(backend, dtype):
    for w_pos, w_neg in ((0.8, None), (0.8, 1.7)):
        fn = _loss(sample_pairs("labels", (2,), 20), estimator="ms", w_pos=w_pos, w_neg=w_neg)
        assert_matches_reference(fn, {"m": sample_scores((2,), 20)}, backend, dtype)


@pytest.mark.parametrize("estimator,reduction", [*OPTIONS, ("ms", "mean"), ("ms", "sum")])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_empty_sides_match_float64_reference(backend, dtype, estimator, reduction):
    m = sample_scores((3,), 19)
    scales = _scale_inputs(0.7, 1.4) if estimator == "ms" else {}
    options = dict(estimator=estimator, reduction=reduction)
    # ¬Ω empty: one bias value in every problem
    assert_matches_reference(
        _loss({"bias": torch.zeros(3, 19, dtype=torch.int64)}, **options), {"m": m, **scales}, backend, dtype
    )
    # Ω empty in problem 1 (all-False mask); problem 2: every sample its own group (only the diagonal counts)
    mask = ref.pair_mask(labels((3,), 19, classes=3, seed=1).unsqueeze(-1), 0)
    mask[1] = False
    groups = labels((3,), 19, classes=2, seed=2)
    groups[2] = torch.arange(19)
    spec = {"mask": mask, "groups": groups}
    _, (grad, *_) = assert_matches_reference(_loss(spec, **options), {"m": m, **scales}, backend, dtype, seed=1)
    assert torch.all(grad[1][ref.same_group(groups[1])] != 0)  # the non-empty side still gets its gradient
    # groups that empty both sides: I = 0, and no NaN
    spec = {"mask": torch.zeros(3, 19, 19, dtype=torch.bool), "groups": groups}
    assert_matches_reference(_loss(spec, **options), {"m": m, **scales}, backend, dtype, seed=2)


@pytest.mark.parametrize("estimator,reduction", [("cs", "mean"), ("jsd", "sum")])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_side_empty_in_some_row_blocks_only(backend, dtype, estimator, reduction):
    # the first rows lie wholly in Ω: a tiled kernel's ¬Ω partials there are empty (max -inf) and combine to nothing
    mask = ref.pair_mask(labels((2,), 150, classes=3, seed=8).unsqueeze(-1), 0)
    mask[:, :70] = True
    mask[1, 100:] = False
    fn = _loss({"mask": mask}, estimator=estimator, reduction=reduction)
    assert_matches_reference(fn, {"m": sample_scores((2,), 150, seed=8)}, backend, dtype, seed=8)


@pytest.mark.parametrize("estimator", ["cs", "jsd", "ms"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_empty_sides_contribute_zero(backend, estimator, reduction):
    device = device_of(backend)
    m = sample_scores((), 6).to(device).requires_grad_()
    ms = dict(w_pos=0.8) if estimator == "ms" else {}
    same = torch.zeros(6, dtype=torch.long)
    # all labels equal: ¬Ω is empty, I is the Ω side alone
    only_inside = _loss({"bias": same}, estimator=estimator, reduction=reduction, **ms)(m, backend=backend)
    inside = _definition(m.detach().cpu(), torch.ones(6, 6, dtype=torch.bool), estimator, reduction, **ms)
    assert abs(float(only_inside.detach()) - inside) < 1e-12
    # no pair in Ω (an all-False mask): I is the ¬Ω side alone
    only_outside = _loss({"mask": torch.zeros(6, 6, dtype=torch.bool)}, estimator=estimator, reduction=reduction, **ms)(
        m, backend=backend
    )
    outside = _definition(m.detach().cpu(), torch.zeros(6, 6, dtype=torch.bool), estimator, reduction, **ms)
    assert abs(float(only_outside.detach()) - outside) < 1e-12
    # groups all distinct: only the diagonal (in Ω) counts, the off-diagonal pairs get no gradient
    bias = torch.tensor([0, 1, 0, 1, 2, 2])
    diagonal = _loss({"bias": bias, "groups": torch.arange(6)}, estimator=estimator, reduction=reduction, **ms)(
        m, backend=backend
    )
    (grad,) = torch.autograd.grad(diagonal, m)
    assert torch.isfinite(diagonal) and torch.equal(grad * torch.eye(6, dtype=F64, device=device), grad)
    # groups that put every pair of ¬Ω in different groups: that side is empty, not NaN
    nothing_outside = _loss({"bias": bias, "groups": bias}, estimator=estimator, reduction=reduction, **ms)(
        m, backend=backend
    )
    expected = _definition(m.detach().cpu(), brute_force_mask(bias, 0), estimator, reduction, bias, **ms)
    assert abs(float(nothing_outside.detach()) - expected) < 1e-12


@pytest.mark.parametrize("estimator", ["cs", "jsd", "ms"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", backends())
def test_huge_scores_stay_finite(backend, estimator, reduction):
    device = device_of(backend)
    m = (1e4 * torch.sign(torch.randn(16, 16))).to(device).requires_grad_()
    scales = [torch.tensor(2.0, device=device, requires_grad=True)] if estimator == "ms" else []
    fn = _loss({"bias": labels((), 16, classes=2)}, estimator=estimator, reduction=reduction)
    out = fn(m, *scales, backend=backend)
    grads = torch.autograd.grad(out, [m, *scales])
    assert torch.isfinite(out) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("estimator,reduction", [*OPTIONS, ("ms", "mean"), ("ms", "sum")])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_huge_scores_match_float64_reference(backend, dtype, estimator, reduction):
    # |m| up to 1e4: log(1 + mean e^x) through the log-sum-exp, no overflow to inf
    m = (1e4 * torch.tanh(sample_scores((3,), 40, scale=1.0))).float().double()
    assert m.abs().max() > 5e3
    scales = _scale_inputs(0.9, 1.1) if estimator == "ms" else {}
    fn = _loss(sample_pairs("tolerance", (3,), 40), estimator=estimator, reduction=reduction)
    assert_matches_reference(fn, {"m": m, **scales}, backend, dtype, seed=3)


@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_non_contiguous_scores(backend, dtype):
    m = sample_scores((3,), 37)
    bias = labels((3,), 37, classes=3, seed=2)

    def fn(m, backend):
        mt = m.mT.contiguous().mT  # the same values, column-major
        assert not mt.is_contiguous()
        return ck.cross_sample_mi(mt, bias.to(m.device), backend=backend)

    assert_matches_reference(fn, {"m": m}, backend, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_low_precision_is_computed_in_float32_and_returned_in_input_dtype(backend, dtype):
    m = sample_scores((3,), 37).to(device_of(backend), dtype).requires_grad_()
    bias = labels((3,), 37, classes=3, seed=2).to(m.device)
    out = ck.cross_sample_mi(m, bias, backend=backend)
    (grad,) = torch.autograd.grad(out.sum(), m)
    assert out.dtype == dtype and grad.dtype == dtype
    expected = ck.cross_sample_mi(m.detach().float(), bias, backend=backend)
    torch.testing.assert_close(out, expected.to(dtype))


@pytest.mark.parametrize("n", [512, 1024, 4096])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_large_n(backend, dtype, n):
    skip_unless_on_gpu(backend)
    for estimator, reduction in OPTIONS:
        fn = _loss(sample_pairs("tolerance", (2,), n), estimator=estimator, reduction=reduction)
        assert_matches_reference(fn, {"m": sample_scores((2,), n)}, backend, dtype)


@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_opcheck(backend):
    device = device_of(backend)
    op = custom_op(backend, "cross_sample_mi")
    bias = labels((2,), 9, classes=3, k=3).to(device)
    groups = labels((2,), 9, classes=2, seed=1).to(device)
    mask = ref.pair_mask(bias, 1)
    w_pos = torch.tensor(1.5, device=device, requires_grad=True)
    w_neg = torch.tensor(0.5, device=device, requires_grad=True)
    m = sample_scores((2,), 9).float().to(device).requires_grad_()
    for omega in ((bias, None, 1), (None, mask, 0)):
        for estimator, reduction in OPTIONS:
            torch.library.opcheck(op, (m, *omega, estimator, reduction))
            torch.library.opcheck(op, (m, *omega, estimator, reduction, groups))
        # the C++ op takes w_neg None (then w_neg = w_pos); Triton's wrapper passes both scales to its op
        for scales in ((w_pos, w_neg), (w_pos, None))[: 1 if backend == "triton" else 2]:
            torch.library.opcheck(op, (m, *omega, "ms", "sum", groups, *scales))


@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_compiles_with_fullgraph(backend):
    spec = sample_pairs("tolerance", (2,), 20)
    compiled = torch.compile(lambda m: _loss(spec)(m, backend=backend).sum(), fullgraph=True)

    def loss(m, backend):
        return compiled(m) if backend != "reference" else _loss(spec)(m, backend="reference").sum()

    assert_matches_reference(loss, {"m": sample_scores((2,), 20)}, backend, torch.float32)


BAD = {
    "ms w_pos = 0": (dict(estimator="ms", w_pos=0.0), ValueError, "w_pos must be > 0"),
    "ms w_neg < 0": (dict(estimator="ms", w_neg=-1.0), ValueError, "w_neg must be > 0"),
    "ms w_pos tensor <= 0": (
        dict(estimator="ms", w_pos=torch.tensor(-1.0, dtype=F64)),
        ValueError,
        "w_pos must be > 0",
    ),
    "cs with w_pos": (dict(w_pos=2.0), ValueError, "w_pos applies to estimator='ms'"),
    "jsd with w_neg": (dict(estimator="jsd", w_neg=1.0), ValueError, "w_neg applies to estimator='ms'"),
    "groups of floats": (dict(groups=labels((), 6).double()), TypeError, "groups must hold integer"),
    "groups wrong shape": (dict(groups=labels((), 6)[:3]), ValueError, "groups must have shape"),
    "groups not a tensor": (dict(groups=[0] * 6), TypeError, "groups must be an"),
    "groups on another device": (dict(groups=labels((), 6).to("meta")), ValueError, "groups must be on"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_raise_clearly(case):
    kwargs, error, message = BAD[case]
    with pytest.raises(error, match=message):
        ck.cross_sample_mi(torch.randn(6, 6, dtype=F64), labels((), 6), **kwargs)
