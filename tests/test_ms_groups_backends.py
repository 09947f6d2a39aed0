"""estimator="ms", reduction=None, alpha_neg and groups= on the fused C++ CPU and CUDA backends
(DESIGN.md §2) against the float64 reference: gradcheck in float64, and float32 values and every
gradient (u, v, alpha, alpha_neg, tau_y, tau_b; m, w_pos, w_neg) within the §2 tolerance.

The CUDA cases need a GPU and an extension built with its CUDA sources; they skip, with the reason,
everywhere else (STATUS: written before any GPU run of the CUDA backend).
"""

from __future__ import annotations

import pytest
import torch
from _helpers import assert_matches, clustered, labels, rel_err

import csad_kernels as ck
import csad_kernels.cuda  # noqa: F401  (registers backend "cuda" when the extension has CUDA kernels)
import csad_kernels.reference as ref

F64 = torch.float64
TOL = 1e-4


def _skip_reason(backend: str) -> str | None:
    if backend == "cuda" and not torch.cuda.is_available():
        return "the CUDA backend needs a CUDA GPU; torch sees none"
    reason = ck.unavailable_reason(backend)
    return None if reason is None else f"the {backend!r} backend is not available: {reason}"


FUSED = [
    pytest.param(b, marks=pytest.mark.skipif(_skip_reason(b) is not None, reason=str(_skip_reason(b))))
    for b in ("cpu", "cuda")
]
DEVICE = {"cpu": "cpu", "cuda": "cuda"}


@pytest.fixture(autouse=True)
def _ieee_float32_matmul():
    """Full fp32 GEMMs (no TF32) for the float32 reference run on a GPU."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


def _moved(spec: dict, device: str) -> dict:
    return {k: x.to(device) if isinstance(x, torch.Tensor) else x for k, x in spec.items()}


def _problem(batch, n, d, seed=0):
    u, _ = clustered(batch, n, d, seed=seed)
    v, _ = clustered(batch, n, d, seed=seed + 1)
    return u, v


def _pairs(kind: str, batch, n, seed=0) -> dict:
    """Ω and groups specifications: {"bias"/"mask", "tolerance", "groups"}."""
    bias3 = labels(batch, n, classes=5, k=3, seed=seed)
    single = labels(batch, n, classes=3, seed=seed)
    groups = labels(batch, n, classes=2, seed=seed + 7)
    return {
        "tolerance": {"bias": bias3, "tolerance": 1},
        "labels": {"bias": single},
        "mask": {"mask": ref.pair_mask(bias3, 1)},
        "groups": {"bias": bias3, "tolerance": 1, "groups": groups},
        "mask+groups": {"mask": ref.pair_mask(single.unsqueeze(-1), 0), "groups": groups},
        # every pair in Ω: ¬Ω is empty
        "all in omega": {"bias": torch.zeros(*batch, n, dtype=torch.long)},
        # groups = the bias labels: every counted pair is in Ω, ¬Ω is empty
        "groups empty outside": {"bias": single, "groups": single},
        # no pair in Ω: Ω is empty
        "empty omega": {"mask": torch.zeros(*batch, n, n, dtype=torch.bool), "groups": groups},
    }[kind]


def _estimator_fn(spec: dict, with_alpha_neg: bool, **kw):
    def fn(u, v, alpha, tau_y, tau_b, *rest, backend, device):
        return ck.cs_mutual_information(
            u,
            v,
            **_moved(spec, device),
            alpha=alpha,
            alpha_neg=rest[0] if with_alpha_neg else None,
            tau_y=tau_y,
            tau_b=tau_b,
            backend=backend,
            **kw,
        )

    return fn


def _value_and_grads(fn, inputs, backend, device, dtype):
    xs = [t.detach().to(device, dtype).requires_grad_() for t in inputs]
    out = fn(*xs, backend=backend, device=device)
    # random signs across the batch: gradients of the scalars sum over problems and partly cancel,
    # which exposes round-off that all-positive weights would hide
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    grads = torch.autograd.grad((out * weights.to(device, out.dtype)).sum(), xs, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads, strict=True)]
    return out, grads


def _compare(fn, inputs64, names, backend):
    device = DEVICE[backend]
    exact, exact_grads = _value_and_grads(fn, inputs64, "reference", "cpu", F64)
    got, got_grads = _value_and_grads(fn, inputs64, backend, device, torch.float32)
    plain, plain_grads = _value_and_grads(fn, inputs64, "reference", device, torch.float32)
    assert got.dtype == torch.float32 and got.shape == exact.shape and got.device.type == device
    assert torch.isfinite(got).all()
    assert_matches(got.cpu(), exact, plain.cpu(), tol=TOL, name="value")
    for name, g, e, p in zip(names, got_grads, exact_grads, plain_grads, strict=True):
        assert torch.isfinite(g).all(), name
        assert_matches(g.cpu(), e, p.cpu(), tol=TOL, name=f"d{name}")
    return exact, exact_grads


def _scalars(with_alpha_neg: bool):
    values = (1.3, 8.0, 12.0, 0.6) if with_alpha_neg else (1.3, 8.0, 12.0)
    names = ["alpha", "tau_y", "tau_b", "alpha_neg"][: len(values)]
    return [torch.tensor(x, dtype=F64) for x in values], names


# ---------------------------------------------------------------------------------------------
# The whole estimator, float32 against the float64 reference


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("pairs", ["tolerance", "mask", "groups"])
def test_ms_estimator_float32_matches_reference(backend, similarity, pairs):
    batch, n = (3,), 37
    u, v = _problem(batch, n, 7, seed=n)
    scalars, names = _scalars(True)
    fn = _estimator_fn(_pairs(pairs, batch, n), True, similarity=similarity, estimator="ms")
    _, grads = _compare(fn, [u, v, *scalars], ["u", "v", *names], backend)
    assert float(grads[-1].abs()) > 0  # alpha_neg's gradient is exercised


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("reduction", [None, "mean", "sum"])
@pytest.mark.parametrize("with_alpha_neg", [False, True])
def test_ms_reductions_and_alpha_neg_default(backend, reduction, with_alpha_neg):
    batch, n = (2, 2), 24  # two leading dims
    u, v = _problem(batch, n, 5, seed=3)
    scalars, names = _scalars(with_alpha_neg)
    fn = _estimator_fn(_pairs("mask+groups", batch, n, seed=3), with_alpha_neg, estimator="ms", reduction=reduction)
    _compare(fn, [u, v, *scalars], ["u", "v", *names], backend)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("pairs", ["groups", "mask+groups"])
def test_cs_and_jsd_with_groups(backend, estimator, reduction, pairs):
    batch, n = (3,), 33
    u, v = _problem(batch, n, 6, seed=5)
    scalars, names = _scalars(False)
    fn = _estimator_fn(_pairs(pairs, batch, n, seed=5), False, estimator=estimator, reduction=reduction)
    _compare(fn, [u, v, *scalars], ["u", "v", *names], backend)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("estimator", ["ms", "cs", "jsd"])
@pytest.mark.parametrize("pairs", ["all in omega", "groups empty outside", "empty omega"])
def test_an_empty_side_contributes_zero(backend, estimator, pairs):
    batch, n = (2,), 20
    u, v = _problem(batch, n, 5, seed=9)
    with_alpha_neg = estimator == "ms"
    scalars, names = _scalars(with_alpha_neg)
    fn = _estimator_fn(_pairs(pairs, batch, n, seed=9), with_alpha_neg, estimator=estimator)
    _, grads = _compare(fn, [u, v, *scalars], ["u", "v", *names], backend)
    if with_alpha_neg and pairs != "empty omega":
        assert float(grads[-1]) == 0.0  # ¬Ω is empty: w₋ has no influence


@pytest.mark.parametrize("backend", FUSED)
def test_ms_larger_problem(backend):
    batch, n = (), 130
    u, v = _problem(batch, n, 16, seed=2)
    scalars, names = _scalars(True)
    fn = _estimator_fn(_pairs("groups", batch, n, seed=2), True, estimator="ms")
    _compare(fn, [u, v, *scalars], ["u", "v", *names], backend)


# ---------------------------------------------------------------------------------------------
# cross_sample_mi from pair scores


def _scores_fn(spec: dict, with_w_neg: bool, **kw):
    def fn(m, w_pos, *rest, backend, device):
        return ck.cross_sample_mi(
            m, **_moved(spec, device), w_pos=w_pos, w_neg=rest[0] if with_w_neg else None, backend=backend, **kw
        )

    return fn


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("pairs", ["tolerance", "mask", "groups", "mask+groups", "groups empty outside"])
@pytest.mark.parametrize("reduction", [None, "mean", "sum"])
@pytest.mark.parametrize("with_w_neg", [False, True])
def test_cross_sample_mi_ms_float32_matches_reference(backend, pairs, reduction, with_w_neg):
    batch, n = (3,), 29
    u, v = _problem(batch, n, 5, seed=11)
    m = ref.pair_scores(u, v, 1.0, 8.0, 12.0)  # the unscaled joint similarity, negative and spread
    scales = [torch.tensor(1.7, dtype=F64)] + ([torch.tensor(0.4, dtype=F64)] if with_w_neg else [])
    names = ["m", "w_pos", "w_neg"][: 1 + len(scales)]
    fn = _scores_fn(_pairs(pairs, batch, n, seed=11), with_w_neg, estimator="ms", reduction=reduction)
    _compare(fn, [m, *scales], names, backend)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_sample_mi_cs_and_jsd_with_groups(backend, estimator, reduction):
    batch, n = (2, 3), 21
    m = 2.0 * torch.randn(*batch, n, n, generator=torch.Generator().manual_seed(4), dtype=F64)
    spec = _pairs("groups", batch, n, seed=4)

    def fn(m, *, backend, device):
        return ck.cross_sample_mi(m, **_moved(spec, device), estimator=estimator, reduction=reduction, backend=backend)

    _compare(fn, [m], ["m"], backend)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ms_is_stable_for_huge_scores(backend, reduction):
    device = DEVICE[backend]
    m = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], device=device, requires_grad=True)
    w = torch.tensor(2.0, device=device, requires_grad=True)
    out = ck.cross_sample_mi(
        m, torch.tensor([0, 1], device=device), estimator="ms", reduction=reduction, w_pos=w, backend=backend
    )
    grads = torch.autograd.grad(out, [m, w])
    assert torch.isfinite(out) and all(torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------------------------------------
# float64 gradcheck (CPU backend; the CUDA one when a GPU is present)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("pairs", ["tolerance", "mask+groups"])
def test_ms_estimator_gradcheck(backend, similarity, pairs):
    device = DEVICE[backend]
    u, v = _problem((2,), 6, 3, seed=1)
    scalars = [torch.tensor(x, dtype=F64, device=device, requires_grad=True) for x in (1.3, 3.0, 4.0, 0.7)]
    spec = _moved(_pairs(pairs, (2,), 6, seed=1), device)

    def fn(u, v, alpha, tau_y, tau_b, alpha_neg):
        return ck.cs_mutual_information(
            u,
            v,
            **spec,
            alpha=alpha,
            alpha_neg=alpha_neg,
            tau_y=tau_y,
            tau_b=tau_b,
            similarity=similarity,
            estimator="ms",
            backend=backend,
        )

    inputs = (u.to(device).requires_grad_(), v.to(device).requires_grad_(), *scalars)
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("estimator", ["ms", "cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_groups_gradcheck(backend, estimator, reduction):
    device = DEVICE[backend]
    u, v = _problem((2,), 7, 3, seed=2)
    scalars = [torch.tensor(x, dtype=F64, device=device, requires_grad=True) for x in (1.3, 3.0, 4.0)]
    spec = _moved(_pairs("groups", (2,), 7, seed=2), device)

    def fn(u, v, alpha, tau_y, tau_b):
        return ck.cs_mutual_information(
            u,
            v,
            **spec,
            alpha=alpha,
            tau_y=tau_y,
            tau_b=tau_b,
            estimator=estimator,
            reduction=reduction,
            backend=backend,
        )

    assert torch.autograd.gradcheck(fn, (u.to(device).requires_grad_(), v.to(device).requires_grad_(), *scalars))


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("with_w_neg", [False, True])
def test_cross_sample_mi_ms_gradcheck(backend, with_w_neg):
    device = DEVICE[backend]
    m = torch.randn(2, 7, 7, generator=torch.Generator().manual_seed(3), dtype=F64).to(device).requires_grad_()
    spec = _moved(_pairs("groups", (2,), 7, seed=3), device)
    scales = [torch.tensor(x, dtype=F64, device=device, requires_grad=True) for x in (1.4, 0.6)[: 1 + with_w_neg]]

    def fn(m, w_pos, *rest):
        return ck.cross_sample_mi(
            m, **spec, estimator="ms", w_pos=w_pos, w_neg=rest[0] if rest else None, backend=backend
        )

    assert torch.autograd.gradcheck(fn, (m, *scales))


# ---------------------------------------------------------------------------------------------
# torch.library contracts of the extended schemas


@pytest.mark.parametrize("backend", FUSED)
def test_opcheck_cross_sample_mi_with_ms_and_groups(backend):
    device = DEVICE[backend]
    bias = labels((2,), 9, classes=3, k=3).to(device)
    groups = labels((2,), 9, classes=2, seed=1).to(device)
    mask = ref.pair_mask(bias, 1)
    for estimator in ("ms", "cs", "jsd"):
        m = torch.randn(2, 9, 9, device=device, requires_grad=True)
        if estimator == "ms":
            w_pos = torch.tensor(1.5, device=device, requires_grad=True)
            w_neg = torch.tensor(0.5, device=device, requires_grad=True)
            scales = [(w_pos, w_neg), (w_pos, None)]
        else:
            scales = [(None, None)]
        for w_p, w_n in scales:
            for omega in ((bias, None, 1), (None, mask, 0)):
                args = (m, *omega, estimator, "sum" if estimator == "ms" else "mean", groups, w_p, w_n)
                torch.library.opcheck(torch.ops.csad.cross_sample_mi.default, args)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("similarity", ["joint", "content"])
def test_opcheck_fused_estimator_with_ms_and_groups(backend, similarity):
    device = DEVICE[backend]
    u, v = _problem((2,), 9, 4)
    bias = labels((2,), 9, classes=3, k=3).to(device)
    groups = labels((2,), 9, classes=2, seed=1).to(device)
    for estimator, alpha_neg in (("ms", 0.5), ("ms", None), ("cs", None)):
        args = (
            u.float().to(device).requires_grad_(),
            v.float().to(device).requires_grad_(),
            bias,
            None,
            1,
            torch.tensor(1.0, device=device, requires_grad=True),
            torch.tensor(10.0, device=device, requires_grad=True),
            torch.tensor(10.0, device=device, requires_grad=True),
            0.5,
            similarity,
            estimator,
            "sum",
            groups,
            None if alpha_neg is None else torch.tensor(alpha_neg, device=device, requires_grad=True),
        )
        torch.library.opcheck(torch.ops.csad.cs_mutual_information_forward.default, args)


def test_auto_picks_the_cpu_backend_for_ms_and_groups():
    if _skip_reason("cpu") is not None:
        pytest.skip(_skip_reason("cpu"))
    u, v = _problem((), 12, 4)
    bias, groups = labels((), 12), labels((), 12, classes=2, seed=1)
    kw = dict(alpha=1.2, alpha_neg=0.8, tau_y=8.0, tau_b=12.0, groups=groups, estimator="ms")
    auto = ck.cs_mutual_information(u, v, bias, **kw)
    cpu = ck.cs_mutual_information(u, v, bias, **kw, backend="cpu")
    assert torch.equal(auto, cpu)
    expected = ck.cs_mutual_information(u, v, bias, **kw, backend="reference")
    assert abs(float(cpu) - float(expected)) <= 1e-10 * max(1.0, abs(float(expected)))


def test_cpu_compiles_with_fullgraph_for_ms_and_groups():
    if _skip_reason("cpu") is not None:
        pytest.skip(_skip_reason("cpu"))
    u, v = _problem((2,), 16, 6)
    bias, groups = labels((2,), 16, classes=3), labels((2,), 16, classes=2, seed=1)
    u32 = u.float().requires_grad_()
    alpha_neg = torch.tensor(0.7, requires_grad=True)
    kw = dict(alpha=1.3, tau_y=10.0, tau_b=10.0, estimator="ms")

    def fn(a, b, w_neg, backend):
        return ck.cs_mutual_information(a, b, bias, groups=groups, alpha_neg=w_neg, backend=backend, **kw)

    compiled = torch.compile(lambda a, b, w: fn(a, b, w, "cpu"), fullgraph=True)
    value = compiled(u32, v.float(), alpha_neg)
    grads = torch.autograd.grad(value.sum(), [u32, alpha_neg])
    x_ref = [u.clone().requires_grad_(), alpha_neg.detach().double().requires_grad_()]
    expected = fn(x_ref[0], v, x_ref[1], "reference")
    expected_grads = torch.autograd.grad(expected.sum(), x_ref)
    assert rel_err(value, expected) <= 1e-4
    for got, want in zip(grads, expected_grads, strict=True):
        assert rel_err(got, want) <= 1e-4
