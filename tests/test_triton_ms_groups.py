"""Triton estimator="ms", reduction=None, alpha_neg and groups= (issue 16) against the float64 reference.

Both ops that end in the masked loss: ``cross_sample_mi`` (the tiled loss kernel) and the whole estimator
``cs_mutual_information`` in its one-program regime and its tiled regime (forced with SMALL_N_OVERRIDE = 0).
Value and every gradient (u, v, alpha, alpha_neg, tau_y, tau_b; m, w_pos, w_neg) within 1e-4 relative error
(DESIGN.md §2). Interpreter runs are slow: the cases rotate the options instead of taking their product.
"""

import pytest
import torch
from _helpers import assert_matches, clustered, labels, rel_err
from _triton_ops import DEVICE, SKIP, TOL

import csad_kernels as ck
import csad_kernels.reference as ref

pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))

if SKIP is None:
    import csad_kernels.triton.cross_sample_mi as tcsmi
    import csad_kernels.triton.cs_mutual_information as tmi


def _pairs(batch, n, source, seed=0):
    if source == "labels":
        return {"bias": labels(batch, n, classes=3, seed=n + seed)}
    if source == "tolerance":
        return {"bias": labels(batch, n, classes=5, k=3, seed=n + seed), "tolerance": 1}
    return {"mask": ref.pair_mask(labels(batch, n, classes=3, seed=n + seed).unsqueeze(-1), 0)}


def _groups(batch, n, classes=2):
    return labels(batch, n, classes=classes, seed=n + 11)


def _on_device(kw):
    return {k: (x.to(DEVICE) if isinstance(x, torch.Tensor) else x) for k, x in kw.items()}


def _compare(names, got, want, floors=None):
    for name, g, w in zip(names, got, want, strict=True):
        if w is None:
            assert g is None, f"d{name}: the reference has no gradient, Triton returned one"
            continue
        assert g is not None, f"d{name}: missing"
        err = rel_err(g.cpu(), w, floor=(floors or {}).get(name, 1e-300))
        assert err <= TOL, f"d{name}: {err:.3g}"


# ---- cross_sample_mi: pair scores -> loss (the tiled loss kernel)


def _scores(batch, n, scale=3.0, seed=0):
    """Pair scores like a similarity (clustered cosine + noise), rounded to float32 for both sides."""
    u, _ = clustered(batch, n, 5, seed=seed + n)
    v, _ = clustered(batch, n, 5, seed=seed + n + 1)
    noise = torch.randn(*batch, n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (scale * ref.cosine_similarity(u, v) + noise).float().double()


def _check_loss(m64, kw, estimator, reduction, w_pos=None, w_neg=None, grad_seed=0, strict=True):
    """Value and gradients (m, and the ms scales given as tensors) of float32 Triton vs float64 reference."""
    scales64 = {k: torch.tensor(x, dtype=torch.float64, requires_grad=True)
                for k, x in (("w_pos", w_pos), ("w_neg", w_neg)) if x is not None}  # fmt: skip
    opts = dict(estimator=estimator, reduction=reduction)
    m_exact = m64.clone().requires_grad_()
    exact = ck.cross_sample_mi(m_exact, **kw, **opts, **scales64, backend="reference")
    g = torch.randn(exact.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    g_exact = torch.autograd.grad(exact, [m_exact, *scales64.values()], g)

    scales32 = {k: t.detach().to(DEVICE, torch.float32).requires_grad_() for k, t in scales64.items()}
    m32 = m64.to(DEVICE, torch.float32).requires_grad_()
    out = ck.cross_sample_mi(m32, **_on_device(kw), **opts, **scales32, backend="triton")
    assert out.dtype == torch.float32 and out.shape == exact.shape
    assert torch.isfinite(out).all()
    g_out = torch.autograd.grad(out, [m32, *scales32.values()], g.to(DEVICE, torch.float32))
    names = ["m", *scales64]
    if strict:
        assert rel_err(out.cpu(), exact) <= TOL
        _compare(names, g_out, g_exact)
        return out.cpu(), g_out[0].cpu()
    # where float32 cannot reach 1e-4 (|m| ~ 1e4): at most twice the error of the float32 reference
    scales_plain = {k: t.detach().float().requires_grad_() for k, t in scales64.items()}
    m_plain = m64.float().requires_grad_()
    plain = ck.cross_sample_mi(m_plain, **kw, **opts, **scales_plain, backend="reference")
    g_plain = torch.autograd.grad(plain, [m_plain, *scales_plain.values()], g.float())
    assert_matches(out.cpu(), exact, plain, name="I")
    for name, a, b, c in zip(names, g_out, g_exact, g_plain, strict=True):
        assert_matches(a.cpu(), b, c, name=f"d{name}")
    return out.cpu(), g_out[0].cpu()


LOSS_CASES = [
    # (batch, n, source, estimator, reduction, groups, w_pos, w_neg)
    ((2,), 37, "labels", "ms", None, False, 0.7, 1.9),
    ((1,), 37, "mask", "ms", "mean", True, 1.3, None),
    ((3,), 64, "tolerance", "ms", "sum", True, 0.4, 2.5),
    ((2,), 130, "labels", "ms", "mean", True, 2.0, 0.5),
    ((1,), 130, "tolerance", "ms", None, False, 1.0, None),
    ((2,), 37, "tolerance", "cs", "mean", True, None, None),
    ((1,), 130, "mask", "cs", "sum", True, None, None),
    ((2,), 64, "labels", "jsd", "sum", True, None, None),
    ((1,), 130, "labels", "jsd", None, True, None, None),
]


@pytest.mark.parametrize("batch,n,source,estimator,reduction,groups,w_pos,w_neg", LOSS_CASES)
def test_loss_matches_float64_reference(batch, n, source, estimator, reduction, groups, w_pos, w_neg):
    kw = _pairs(batch, n, source)
    if groups:
        kw["groups"] = _groups(batch, n)
    _check_loss(_scores(batch, n), kw, estimator, reduction, w_pos, w_neg, grad_seed=n)


def test_ms_scales_as_numbers():
    m = _scores((2,), 20)
    bias = labels((2,), 20, seed=3)
    for w_pos, w_neg in ((0.8, None), (0.8, 1.7)):
        got = ck.cross_sample_mi(m.float(), bias, estimator="ms", w_pos=w_pos, w_neg=w_neg, backend="triton")
        want = ck.cross_sample_mi(m, bias, estimator="ms", w_pos=w_pos, w_neg=w_neg, backend="reference")
        assert rel_err(got, want) <= TOL


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_empty_sides_contribute_zero(reduction):
    m = _scores((3,), 19)
    # ¬Ω empty: one bias value everywhere
    _check_loss(m, {"bias": torch.zeros(3, 19, dtype=torch.int64)}, "ms", reduction, 0.7, 1.4)
    # Ω empty in problem 1 (all-False mask); problem 2: every sample its own group (only the diagonal counts)
    mask = ref.pair_mask(labels((3,), 19, classes=3, seed=1).unsqueeze(-1), 0)
    mask[1] = False
    groups = labels((3,), 19, classes=2, seed=2)
    groups[2] = torch.arange(19)
    _, grad = _check_loss(m, {"mask": mask, "groups": groups}, "ms", reduction, 0.7, 1.4, grad_seed=1)
    assert torch.all(grad[1][ref.same_group(groups[1])] != 0)  # the non-empty side still gets its gradient
    # the empty side alone is exactly 0 with zero weight and zero scale gradient
    w = torch.tensor(0.7)
    bias = torch.zeros(3, 19, 1, dtype=torch.int64)
    _, stats = tcsmi.cross_sample_mi_op(m.float(), bias, None, 0, "ms", reduction, None, w, w)
    assert stats.shape == (3, 6)
    assert torch.all(stats[:, 1] == 0) and torch.all(stats[:, 3] == 0) and torch.all(stats[:, 5] == 0)
    # groups that empty both sides: I = 0 and no NaN
    for estimator in ("cs", "jsd"):
        _check_loss(m, {"mask": torch.zeros(3, 19, 19, dtype=torch.bool), "groups": groups}, estimator, reduction)


def test_ms_large_scores_do_not_overflow():
    m = (1e4 * torch.tanh(_scores((2,), 40, scale=1.0))).float().double()
    assert m.abs().max() > 5e3
    for reduction in ("mean", "sum"):
        _check_loss(m, _pairs((2,), 40, "tolerance"), "ms", reduction, 0.9, 1.1, grad_seed=3, strict=False)


def test_loss_opcheck_ms_groups():
    m = _scores((2,), 12).float().requires_grad_()
    bias = labels((2,), 12, classes=5, k=3, seed=4)
    groups = labels((2,), 12, classes=2, seed=5)
    w_pos, w_neg = torch.tensor(0.7, requires_grad=True), torch.tensor(1.3, requires_grad=True)
    torch.library.opcheck(tcsmi.cross_sample_mi_op, (m, bias, None, 1, "ms", "sum", groups, w_pos, w_neg))
    torch.library.opcheck(tcsmi.cross_sample_mi_op, (m, None, ref.pair_mask(bias, 1), 0, "cs", "mean", groups))


# ---- cs_mutual_information: the whole estimator, one-program and tiled regimes


def _check_estimator(batch, n, d, similarity, estimator, reduction, omega, groups, alpha_neg, grad_seed=0, pairs=None):
    u, _ = clustered(batch, n, d, seed=n)
    v, _ = clustered(batch, n, d, seed=n + 7)
    kw = dict(pairs if pairs is not None else _pairs(batch, n, omega))
    if groups is not None:
        kw["groups"] = groups if isinstance(groups, torch.Tensor) else _groups(batch, n)
    opts = dict(similarity=similarity, estimator=estimator, reduction=reduction)
    values = {"alpha": 1.3, "tau_y": 4.0, "tau_b": 10.0}
    if alpha_neg is not None:
        values["alpha_neg"] = alpha_neg

    def run(dtype, device, backend):
        s = {k: torch.tensor(x, dtype=dtype, device=device, requires_grad=True) for k, x in values.items()}
        x = [t.to(device, dtype).requires_grad_() for t in (u, v)]
        out = ck.cs_mutual_information(*x, **_on_device(kw), **s, **opts, backend=backend)
        return out, [*x, *s.values()]

    expected, wrt64 = run(torch.float64, "cpu", "reference")
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    eg = torch.autograd.grad(expected, wrt64, g, allow_unused=True)
    out, wrt32 = run(torch.float32, DEVICE, "triton")
    assert out.dtype == torch.float32 and out.shape == expected.shape
    og = torch.autograd.grad(out, wrt32, g.to(DEVICE, torch.float32), allow_unused=True)
    assert rel_err(out.cpu(), expected) <= TOL
    _compare(["u", "v", *values], og, eg)


ESTIMATOR_CASES = [
    # (batch, n, d, similarity, estimator, reduction, omega, groups, alpha_neg)
    ((2,), 37, 7, "joint", "ms", None, "labels", None, 0.6),
    ((), 64, 16, "content", "ms", "mean", "mask", True, None),
    ((3,), 37, 5, "structural", "ms", "sum", "tolerance", True, 2.0),
    ((), 130, 7, "joint", "ms", "mean", "labels", True, 0.6),
    ((2,), 37, 7, "joint", "cs", "mean", "labels", True, None),
    ((), 64, 7, "content", "jsd", "sum", "tolerance", True, None),
    ((), 130, 5, "structural", "cs", None, "mask", True, None),
]


@pytest.mark.parametrize("batch,n,d,similarity,estimator,reduction,omega,groups,alpha_neg", ESTIMATOR_CASES)
def test_one_program_regime(batch, n, d, similarity, estimator, reduction, omega, groups, alpha_neg):
    assert n <= tmi.small_n_limit()
    _check_estimator(batch, n, d, similarity, estimator, reduction, omega, groups, alpha_neg, grad_seed=n)


TILED_CASES = [
    ((2,), 37, 7, "joint", "ms", "mean", "tolerance", True, 0.6),
    ((), 64, 16, "content", "ms", None, "labels", None, None),
    ((), 130, 5, "structural", "ms", "sum", "mask", True, 2.0),
    ((), 130, 7, "joint", "ms", None, "labels", None, 0.6),
    ((2,), 64, 7, "joint", "jsd", "mean", "labels", True, None),
    ((), 130, 7, "content", "cs", "sum", "labels", True, None),
]


@pytest.mark.parametrize("batch,n,d,similarity,estimator,reduction,omega,groups,alpha_neg", TILED_CASES)
def test_tiled_regime(monkeypatch, batch, n, d, similarity, estimator, reduction, omega, groups, alpha_neg):
    monkeypatch.setattr(tmi, "SMALL_N_OVERRIDE", 0)
    _check_estimator(batch, n, d, similarity, estimator, reduction, omega, groups, alpha_neg, grad_seed=n)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_estimator_empty_sides(monkeypatch, tiled, reduction):
    if tiled:
        monkeypatch.setattr(tmi, "SMALL_N_OVERRIDE", 0)
    # problem 0: one bias value (¬Ω empty); problem 1: every sample its own group (¬Ω ∩ G empty)
    bias = labels((2,), 20, classes=3, seed=2)
    bias[0] = 0
    groups = labels((2,), 20, classes=2, seed=3)
    groups[1] = torch.arange(20)
    _check_estimator((2,), 20, 7, "joint", "ms", reduction, None, groups, 0.6, pairs={"bias": bias})
    # Ω empty in problem 1 (all-False mask)
    mask = ref.pair_mask(labels((2,), 20, classes=3, seed=4).unsqueeze(-1), 0)
    mask[1] = False
    _check_estimator((2,), 20, 7, "content", "ms", reduction, None, None, None, pairs={"mask": mask})


def test_estimator_opcheck_ms_groups():
    u, _ = clustered((2,), 12, 5, seed=1)
    v, _ = clustered((2,), 12, 5, seed=2)
    s = [torch.tensor(x, requires_grad=True) for x in (1.3, 4.0, 10.0)]
    pairs = (labels((2,), 12, classes=3, seed=3).unsqueeze(-1), None, 0)
    args = (u.float().requires_grad_(), v.float().requires_grad_(), *pairs, *s, 0.5, "joint", "ms", "sum")
    groups = labels((2,), 12, classes=2, seed=4)
    torch.library.opcheck(tmi.cs_mutual_information_op, (*args, groups, torch.tensor(0.6, requires_grad=True)))


def test_estimator_compiles_with_fullgraph():
    u, _ = clustered((2,), 12, 5, seed=1)
    v, _ = clustered((2,), 12, 5, seed=2)
    bias, groups = labels((2,), 12, seed=3), labels((2,), 12, classes=2, seed=4)

    def fn(u, v, alpha, alpha_neg, backend="triton"):
        kw = dict(tau_y=4.0, tau_b=10.0, groups=groups, estimator="ms", backend=backend)
        return ck.cs_mutual_information(u, v, bias, alpha=alpha, alpha_neg=alpha_neg, **kw).sum()

    leaves = [u.float().requires_grad_(), torch.tensor(1.3, requires_grad=True), torch.tensor(0.6, requires_grad=True)]
    value = torch.compile(fn, fullgraph=True)(leaves[0], v.float(), *leaves[1:])
    grads = torch.autograd.grad(value, leaves)
    scales = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (1.3, 0.6)]
    exact = [u.clone().requires_grad_(), *scales]
    expected = fn(exact[0], v, *exact[1:], backend="reference")
    assert rel_err(value, expected) <= TOL
    _compare(["u", "alpha", "alpha_neg"], grads, torch.autograd.grad(expected, exact))
