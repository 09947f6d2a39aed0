"""cs_mutual_information(u, v, bias | mask, ...) (DESIGN.md §2): the whole estimator, on every backend × dtype.

Similarities joint, content and structural; estimators cs, jsd and ms (alpha_neg); reductions mean, sum and
None; Ω from labels, a tolerance or a mask; groups=. The composition of the single ops, the float64 reference
match (tests/_compare.py's rule) for the value and every gradient (u, v, alpha, alpha_neg, tau_y, tau_b), empty
sides, gradcheck, and the argument errors. Triton's tiled regime is in tests/test_triton_kernels.py; what the
C++ backward computes and keeps, in tests/test_cpu_backend.py.
"""

import functools
import itertools

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
    on,
    skip_unless_compiled,
    skip_unless_on_gpu,
)
from _helpers import clustered, labels

import csad_kernels as ck
import csad_kernels.reference as ref

F64 = torch.float64
OPTIONS = list(itertools.product(["joint", "content", "structural"], ["cs", "jsd"], ["mean", "sum"]))
SCALARS = {"alpha": 1.3, "tau_y": 4.0, "tau_b": 10.0}

pytestmark = pytest.mark.usefixtures("ieee_float32_matmul")


def sample_inputs(batch, n, d, seed=0, alpha_neg=None, **scalars):
    """u, v: clustered rows (*batch, n, d); alpha, tau_y, tau_b (and alpha_neg) as 0-d tensors; float64."""
    u, _ = clustered(batch, n, d, seed=seed + n)
    v, _ = clustered(batch, n, d, seed=seed + n + 7)
    values = {**SCALARS, **scalars} | ({} if alpha_neg is None else {"alpha_neg": alpha_neg})
    return {"u": u, "v": v, **{k: torch.tensor(x, dtype=F64) for k, x in values.items()}}


def sample_pairs(source, batch, n, seed=0, groups=False):
    """Ω (and groups): single labels, 3-label vectors with tolerance 1, or a mask; groups of two values."""
    if source == "labels":
        spec = {"bias": labels(batch, n, classes=3, seed=n + seed)}
    elif source == "tolerance":
        spec = {"bias": labels(batch, n, classes=5, k=3, seed=n + seed), "tolerance": 1}
    else:
        spec = {"mask": ref.pair_mask(labels(batch, n, classes=3, seed=n + seed).unsqueeze(-1), 0)}
    if groups:
        spec["groups"] = labels(batch, n, classes=2, seed=n + 11)
    return spec


def _estimator(spec, **options):
    """The op as fn(u, v, alpha, tau_y, tau_b, [alpha_neg], backend=...), Ω and groups moved to u's device."""

    def fn(u, v, alpha, tau_y, tau_b, *alpha_neg, backend):
        scalars = dict(alpha=alpha, tau_y=tau_y, tau_b=tau_b, alpha_neg=alpha_neg[0] if alpha_neg else None)
        return ck.cs_mutual_information(u, v, **on(u.device.type, spec), **scalars, **options, backend=backend)

    return fn


def _on(backend, inputs, dtype=None, requires_grad=False):
    dtype = dtype or most_precise_dtype(backend)
    return {k: t.to(device_of(backend), dtype).requires_grad_(requires_grad) for k, t in inputs.items()}


# ---- semantics


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_equals_the_composition_of_the_single_ops(backend, similarity):
    u, v = (t.to(device_of(backend)) for t in sample_inputs((), 20, 6).values() if t.dim())
    groups = labels((), 20).to(u.device)
    alpha, tau_y, tau_b, c = 0.7, 10.0, 5.0, 0.3
    ops = {name: functools.partial(getattr(ck, name), backend=backend) for name in ck._dispatch.OPS}
    m = torch.zeros(20, 20, dtype=F64, device=u.device)
    if similarity != "structural":
        m = m + ops["cosine_similarity"](u, v)
    if similarity != "content":
        r_y = ops["rwr"](ops["softmax_adjacency"](ops["cosine_similarity"](u, u), tau_y), c)
        r_b = ops["rwr"](ops["softmax_adjacency"](ops["cosine_similarity"](v, v), tau_b), c)
        m = m + ops["symmetric_cross_entropy"](r_y, r_b)
    expected = ops["cross_sample_mi"](alpha * m, groups)
    out = ck.cs_mutual_information(
        u, v, groups, alpha=alpha, tau_y=tau_y, tau_b=tau_b, c=c, similarity=similarity, backend=backend
    )
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", backends())
def test_content_similarity_ignores_the_graph_temperatures(backend):
    x = _on(backend, sample_inputs((), 12, 5), requires_grad=True)
    out = _estimator(sample_pairs("labels", (), 12), similarity="content")(*x.values(), backend=backend)
    grads = torch.autograd.grad(out, [x["alpha"], x["tau_y"], x["tau_b"]], allow_unused=True)
    assert grads[0] is not None and grads[0] != 0
    # the reference leaves them unused (None); a fused kernel may return zeros
    assert all(g is None or g == 0 for g in grads[1:])


@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_batched_equals_looped(backend, similarity, estimator, reduction):
    u, v = (t.to(device_of(backend)) for t in sample_inputs((2, 3), 9, 5).values() if t.dim())
    bias = labels((2, 3), 9, classes=4, k=3, seed=1).to(u.device)
    kw = dict(
        alpha=1.0,
        tau_y=10.0,
        tau_b=10.0,
        tolerance=1,
        similarity=similarity,
        estimator=estimator,
        reduction=reduction,
        backend=backend,
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


@pytest.mark.parametrize("backend", backends())
def test_labels_path_equals_mask_path(backend):
    x = _on(backend, sample_inputs((2,), 15, 8))
    bias = labels((2,), 15, classes=8, k=3, seed=4)
    by_labels = _estimator({"bias": bias, "tolerance": 1})(*x.values(), backend=backend)
    by_mask = _estimator({"mask": ref.pair_mask(bias, 1)})(*x.values(), backend=backend)
    torch.testing.assert_close(by_labels, by_mask)


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("backend", backends())
def test_single_bias_batch_is_finite_with_finite_gradients(backend, similarity):
    x = _on(backend, sample_inputs((), 10, 4), requires_grad=True)
    out = _estimator({"bias": torch.full((10,), 3)}, similarity=similarity)(*x.values(), backend=backend)
    assert torch.isfinite(out)
    grads = torch.autograd.grad(out, [x["u"], x["v"], x["alpha"]])
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("backend", backends())
def test_estimator_separates_dependent_from_independent_pairs(backend):
    # When v carries the bias (rows of one bias group share a direction), the critic can tell Ω
    # pairs from the rest and the estimate is larger than for v independent of the bias.
    n, d = 48, 8
    bias = torch.arange(n) % 4
    directions = torch.nn.functional.normalize(torch.randn(4, d, dtype=F64), dim=-1)
    dependent = directions[bias] + 0.05 * torch.randn(n, d, dtype=F64)
    independent = torch.randn(n, d, dtype=F64)
    kw = dict(alpha=4.0, tau_y=10.0, tau_b=10.0, similarity="content", backend=backend)
    dependent, independent = (t.to(device_of(backend), most_precise_dtype(backend)) for t in (dependent, independent))
    bias = bias.to(dependent.device)
    assert ck.cs_mutual_information(dependent, dependent, bias, **kw) > ck.cs_mutual_information(
        independent, independent, bias, **kw
    )


@pytest.mark.parametrize("backend", backends())
def test_ms_w_neg_defaults_to_w_pos_and_ms_of_the_whole_estimator_uses_unscaled_scores(backend):
    x = _on(backend, sample_inputs((), 10, 5, alpha=1.5, tau_y=8.0, tau_b=12.0))
    u, v, alpha, tau_y, tau_b = x.values()
    bias = labels((), 10).to(u.device)
    kw = dict(tau_y=tau_y, tau_b=tau_b, estimator="ms", backend=backend)
    scores = ref.pair_scores(u, v, 1.0, tau_y, tau_b)
    whole = ck.cs_mutual_information(u, v, bias, alpha=alpha, **kw)
    torch.testing.assert_close(whole, ck.cross_sample_mi(scores, bias, estimator="ms", w_pos=alpha, backend=backend))
    assert torch.equal(whole, ck.cs_mutual_information(u, v, bias, alpha=alpha, alpha_neg=alpha, **kw))
    assert not torch.allclose(whole, ck.cs_mutual_information(u, v, bias, alpha=alpha, alpha_neg=0.5 * alpha, **kw))


# ---- gradcheck in float64


@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_gradcheck_every_input(backend, similarity, estimator, reduction):
    x = _on(backend, sample_inputs((2,), 6, 3, tau_y=3.0, tau_b=4.0), requires_grad=True)
    fn = _estimator(sample_pairs("tolerance", (2,), 6), similarity=similarity, estimator=estimator, reduction=reduction)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, backend=backend), tuple(x.values()))


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("source", ["tolerance", "mask"])
@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_gradcheck_ms_with_alpha_neg_and_groups(backend, similarity, source):
    x = _on(backend, sample_inputs((2,), 7, 4, alpha_neg=0.7, tau_y=8.0, tau_b=12.0), requires_grad=True)
    fn = _estimator(sample_pairs(source, (2,), 7, groups=True), similarity=similarity, estimator="ms")
    assert torch.autograd.gradcheck(lambda *a: fn(*a, backend=backend), tuple(x.values()))


@pytest.mark.parametrize("estimator", ["ms", "cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", backends_computing_in(F64))
def test_gradcheck_with_groups(backend, estimator, reduction):
    x = _on(backend, sample_inputs((2,), 7, 3, tau_y=3.0, tau_b=4.0), requires_grad=True)
    fn = _estimator(sample_pairs("tolerance", (2,), 7, groups=True), estimator=estimator, reduction=reduction)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, backend=backend), tuple(x.values()))


# ---- against the float64 reference

# (batch, n, d, similarity, estimator, reduction, source, groups, alpha_neg): every N once, d, B, the options and
# the Ω source rotating; then ms with and without groups and alpha_neg, cs/jsd with groups. N > 256: compiled only.
CASES = [
    ((), 2, 1, "joint", "cs", "mean", "labels", False, None),
    ((3,), 37, 7, "joint", "jsd", "sum", "tolerance", False, None),
    ((), 64, 32, "content", "cs", "sum", "mask", False, None),
    ((3,), 100, 33, "structural", "cs", "mean", "tolerance", False, None),
    ((), 130, 7, "joint", "cs", "mean", "tolerance", False, None),
    ((), 256, 7, "structural", "jsd", "mean", "labels", False, None),
    ((1,), 256, 33, "joint", "cs", "sum", "mask", False, None),
    ((3,), 37, 33, "content", "jsd", "mean", "labels", False, None),
    ((), 64, 1, "structural", "cs", "sum", "labels", False, None),
    ((3,), 100, 32, "joint", "jsd", "mean", "mask", False, None),
    ((1,), 1024, 32, "joint", "cs", "mean", "labels", False, None),
    ((1,), 1024, 33, "structural", "cs", "mean", "mask", False, None),
    ((2,), 37, 7, "joint", "ms", None, "labels", False, 0.6),
    ((), 64, 16, "content", "ms", "mean", "mask", True, None),
    ((3,), 37, 5, "structural", "ms", "sum", "tolerance", True, 2.0),
    ((), 130, 7, "joint", "ms", "mean", "labels", True, 0.6),
    ((), 130, 16, "structural", "ms", None, "tolerance", True, 0.7),
    ((2,), 37, 7, "joint", "cs", "mean", "labels", True, None),
    ((), 64, 7, "content", "jsd", "sum", "tolerance", True, None),
    ((), 130, 5, "structural", "cs", None, "mask", True, None),
]


@pytest.mark.parametrize("batch,n,d,similarity,estimator,reduction,source,groups,alpha_neg", CASES)
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_matches_float64_reference(
    backend, dtype, batch, n, d, similarity, estimator, reduction, source, groups, alpha_neg
):
    if n > 256:
        skip_unless_compiled(backend)
    fn = _estimator(
        sample_pairs(source, batch, n, groups=groups), similarity=similarity, estimator=estimator, reduction=reduction
    )
    assert_matches_reference(fn, sample_inputs(batch, n, d, alpha_neg=alpha_neg), backend, dtype, seed=n)


# d = 1 at N = 1024: du and dv are zero in exact arithmetic, and the float64 reference's own round-off there
# (~2e-9 with reduction="sum") is above the rule's float64 floor, so that dtype has no exact value to compare with.
@pytest.mark.parametrize("backend,dtype", backend_dtypes(dtypes=(torch.float32,)))
def test_one_dimensional_rows_at_large_n(backend, dtype):
    skip_unless_compiled(backend)
    fn = _estimator(sample_pairs("tolerance", (3,), 1024), similarity="content", estimator="jsd", reduction="sum")
    assert_matches_reference(fn, sample_inputs((3,), 1024, 1), backend, dtype, seed=1024)


SHAPES = [((), 2, 1), ((3,), 37, 7), ((), 64, 32), ((3,), 64, 7), ((3,), 100, 33), ((), 130, 7), ((3,), 256, 32)]


# float32, where kernels and plain PyTorch differ most; float64 gets every option at one shape (next test) and the
# shapes of CASES: the product in float64 too would double the CPU suite's longest test.
@pytest.mark.parametrize("batch,n,d", SHAPES)
@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
@pytest.mark.parametrize("backend,dtype", backend_dtypes(dtypes=(torch.float32,)))
def test_every_option_at_every_shape_matches_float64_reference(
    backend, dtype, batch, n, d, similarity, estimator, reduction
):
    skip_unless_compiled(backend, "the product of shapes and options")
    fn = _estimator(
        sample_pairs("tolerance", batch, n), similarity=similarity, estimator=estimator, reduction=reduction
    )
    assert_matches_reference(fn, sample_inputs(batch, n, d, tau_y=8.0, tau_b=12.0), backend, dtype, seed=n)


@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
@pytest.mark.parametrize("backend,dtype", backend_dtypes(dtypes=(torch.float64,)))
def test_every_option_in_float64_matches_reference(backend, dtype, similarity, estimator, reduction):
    fn = _estimator(
        sample_pairs("tolerance", (2,), 45), similarity=similarity, estimator=estimator, reduction=reduction
    )
    assert_matches_reference(fn, sample_inputs((2,), 45, 9, tau_y=8.0, tau_b=12.0), backend, dtype)


@pytest.mark.parametrize("reduction", [None, "mean", "sum"])
@pytest.mark.parametrize("alpha_neg", [None, 0.7])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_ms_reductions_and_alpha_neg_with_two_batch_dims(backend, dtype, reduction, alpha_neg):
    fn = _estimator(sample_pairs("mask", (2, 2), 24, groups=True), estimator="ms", reduction=reduction)
    assert_matches_reference(fn, sample_inputs((2, 2), 24, 5, alpha_neg=alpha_neg), backend, dtype)


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("source,groups", [("tolerance", False), ("mask", False), ("tolerance", True)])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_ms_every_similarity_and_pair_source(backend, dtype, similarity, source, groups):
    skip_unless_compiled(backend, "the product of the ms options")
    fn = _estimator(sample_pairs(source, (3,), 37, groups=groups), similarity=similarity, estimator="ms")
    inputs = sample_inputs((3,), 37, 7, alpha_neg=0.6, tau_y=8.0, tau_b=12.0)
    _, grads = assert_matches_reference(fn, inputs, backend, dtype, seed=37)
    assert float(grads[-1].abs()) > 0  # alpha_neg's gradient is exercised


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("source", ["tolerance", "mask"])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_cs_and_jsd_with_groups(backend, dtype, estimator, reduction, source):
    skip_unless_compiled(backend, "the product of the groups options")
    fn = _estimator(sample_pairs(source, (3,), 33, groups=True), estimator=estimator, reduction=reduction)
    assert_matches_reference(fn, sample_inputs((3,), 33, 6), backend, dtype)


@pytest.mark.parametrize("c", [0.15, 0.85])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_other_restart_probabilities(backend, dtype, c):
    fn = _estimator(sample_pairs("labels", (2,), 37), c=c)
    assert_matches_reference(fn, sample_inputs((2,), 37, 7), backend, dtype)


def _empty_side(kind, batch, n):
    single = labels(batch, n, classes=3, seed=n)
    return {
        "single labels": {"bias": single},
        "all in Ω": {"bias": torch.zeros(*batch, n, dtype=torch.long)},  # ¬Ω is empty
        "groups = labels": {"bias": single, "groups": single},  # every counted pair is in Ω: ¬Ω is empty
        "empty Ω": {"mask": torch.zeros(*batch, n, n, dtype=torch.bool), "groups": labels(batch, n, classes=2)},
    }[kind]


@pytest.mark.parametrize("kind", ["single labels", "all in Ω", "groups = labels", "empty Ω"])
@pytest.mark.parametrize(
    "estimator,reduction", [("cs", "mean"), ("cs", "sum"), ("jsd", "mean"), ("jsd", "sum"), ("ms", None)]
)
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_empty_sides_match_float64_reference(backend, dtype, estimator, reduction, kind):
    fn = _estimator(_empty_side(kind, (2,), 20), estimator=estimator, reduction=reduction)
    alpha_neg = 1.4 if estimator == "ms" else None
    _, grads = assert_matches_reference(fn, sample_inputs((2,), 20, 5, alpha_neg=alpha_neg), backend, dtype)
    if estimator == "ms" and kind in ("all in Ω", "groups = labels"):
        assert float(grads[-1]) == 0.0  # ¬Ω is empty: alpha_neg has no influence


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_empty_sides_in_some_problems_only(backend, dtype, reduction):
    # problem 0: one bias value (¬Ω empty); problem 1: every sample its own group (¬Ω ∩ G empty)
    bias = labels((2,), 20, classes=3, seed=2)
    bias[0] = 0
    groups = labels((2,), 20, classes=2, seed=3)
    groups[1] = torch.arange(20)
    fn = _estimator({"bias": bias, "groups": groups}, estimator="ms", reduction=reduction)
    assert_matches_reference(fn, sample_inputs((2,), 20, 7, alpha_neg=0.6), backend, dtype)
    # Ω empty in problem 1 (all-False mask)
    mask = ref.pair_mask(labels((2,), 20, classes=3, seed=4).unsqueeze(-1), 0)
    mask[1] = False
    fn = _estimator({"mask": mask}, similarity="content", estimator="ms", reduction=reduction)
    assert_matches_reference(fn, sample_inputs((2,), 20, 7), backend, dtype)


@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_alpha_gradient_keeps_accuracy_when_problems_cancel(backend, dtype):
    # Large log-sum-exps (reduction="sum") once lost ~1e-6 relative per problem in dI/dalpha when kept in
    # float32 (the C++ backend); with random-sign weights over the batch that became 2e-4 of the total.
    fn = _estimator(sample_pairs("labels", (3,), 64), similarity="structural", estimator="cs", reduction="sum")
    assert_matches_reference(fn, sample_inputs((3,), 64, 7, tau_y=8.0, tau_b=12.0), backend, dtype)


@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_large_scores_do_not_overflow(backend, dtype):
    fn = _estimator(sample_pairs("labels", (), 16), similarity="content")
    assert_matches_reference(fn, sample_inputs((), 16, 7, alpha=1e4, tau_y=10.0, tau_b=10.0), backend, dtype)


@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_non_contiguous_inputs_stride_zero_gradient_and_zero_rows(backend, dtype):
    inputs = sample_inputs((3,), 37, 7)
    inputs["u"][1, 4] = 0.0  # a zero row: its norm is clamped
    estimator = _estimator(sample_pairs("labels", (3,), 37))

    def fn(u, v, *scalars, backend):
        ut = u.transpose(0, 1).contiguous().transpose(0, 1)
        vt = v.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert not ut.is_contiguous() and not vt.is_contiguous()
        return estimator(ut, vt, *scalars, backend=backend).sum()  # the gradient reaches the kernel expanded (stride 0)

    assert_matches_reference(fn, inputs, backend, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_low_precision_is_computed_in_float32_and_returned_in_input_dtype(backend, dtype):
    x = _on(backend, sample_inputs((2,), 40, 16, alpha=1.0, tau_y=10.0, tau_b=10.0), dtype=dtype)
    x["u"].requires_grad_()
    x["v"].requires_grad_()
    fn = _estimator(sample_pairs("tolerance", (2,), 40))
    out = fn(*x.values(), backend=backend)
    assert out.dtype == dtype
    gu, gv = torch.autograd.grad(out.sum(), (x["u"], x["v"]))
    assert gu.dtype == dtype and gv.dtype == dtype
    expected = fn(*(t.detach().float() for t in x.values()), backend=backend)
    torch.testing.assert_close(out, expected.to(dtype))


@pytest.mark.parametrize("n", [512, 1024, 4096])
@pytest.mark.parametrize("backend,dtype", backend_dtypes())
def test_large_n(backend, dtype, n):
    skip_unless_on_gpu(backend)
    fn = _estimator(sample_pairs("labels", (), n))
    assert_matches_reference(fn, sample_inputs((), n, 32), backend, dtype)


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_opcheck(backend, similarity):
    device = device_of(backend)
    op = custom_op(backend, "cs_mutual_information", cpp_name="cs_mutual_information_forward")
    x = _on(backend, sample_inputs((2,), 9, 4, tau_y=10.0, tau_b=10.0), dtype=torch.float32, requires_grad=True)
    u, v, alpha, tau_y, tau_b = x.values()
    bias = labels((2,), 9, classes=3, k=3).to(device)
    groups = labels((2,), 9, classes=2, seed=1).to(device)
    alpha_neg = torch.tensor(0.5, device=device, requires_grad=True)
    for omega in ((bias, None, 1), (None, ref.pair_mask(bias, 1), 0)):
        args = (u, v, *omega, alpha, tau_y, tau_b, 0.5, similarity)
        torch.library.opcheck(op, (*args, "cs", "mean"))
        torch.library.opcheck(op, (*args, "jsd", "sum", groups))
        torch.library.opcheck(op, (*args, "ms", "sum", groups, alpha_neg))
        torch.library.opcheck(op, (*args, "ms", "sum", groups, None))


@pytest.mark.parametrize("options", [{}, {"estimator": "ms", "groups": True}], ids=["cs", "ms-groups"])
@pytest.mark.parametrize("backend", backends(fused_only=True))
def test_compiles_with_fullgraph(backend, options):
    options = dict(options)
    spec = sample_pairs("tolerance", (2,), 16, groups=options.pop("groups", False))
    estimator = _estimator(spec, **options)
    compiled = torch.compile(lambda *x: estimator(*x, backend=backend).sum(), fullgraph=True)

    def fn(*x, backend):
        return compiled(*x) if backend != "reference" else estimator(*x, backend="reference").sum()

    alpha_neg = 0.7 if options.get("estimator") == "ms" else None
    assert_matches_reference(fn, sample_inputs((2,), 16, 6, alpha_neg=alpha_neg), backend, torch.float32)


BAD = {
    "cs with alpha_neg": (dict(alpha=1.0, alpha_neg=1.0), "alpha_neg applies to estimator='ms'"),
    "ms alpha <= 0": (dict(alpha=-1.0, estimator="ms"), "alpha must be > 0"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_raise_clearly(case):
    kwargs, message = BAD[case]
    m = torch.randn(6, 6, dtype=F64)
    with pytest.raises(ValueError, match=message):
        ck.cs_mutual_information(m, m, labels((), 6), tau_y=1.0, tau_b=1.0, **kwargs)
