"""Triton fused estimator against the float64 reference (interpreter on CPU, compiled on a GPU)."""

import pytest
import torch
from _helpers import clustered, labels, rel_err

pytest.importorskip("triton")
import csad_kernels as ck  # noqa: E402
import csad_kernels.reference as ref  # noqa: E402
import csad_kernels.triton  # noqa: E402,F401  (registers the Triton kernels)
import csad_kernels.triton.cs_mutual_information as tmi  # noqa: E402

if ck.unavailable_reason("triton") is not None:
    pytest.skip(ck.unavailable_reason("triton"), allow_module_level=True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-4

# Every listed N once with fwd + all gradients; d, B, similarity, estimator, reduction and the Ω
# source rotate so that each value appears several times without the full product.
CASES = [
    # (batch, n, d, similarity, estimator, reduction, omega)
    ((), 2, 1, "joint", "cs", "mean", "labels"),
    ((3,), 37, 7, "joint", "jsd", "sum", "tolerance"),
    ((), 64, 32, "content", "cs", "sum", "mask"),
    ((3,), 100, 33, "structural", "cs", "mean", "tolerance"),
    ((), 130, 7, "joint", "cs", "mean", "tolerance"),
    ((), 256, 7, "structural", "jsd", "mean", "labels"),
    ((1,), 256, 33, "joint", "cs", "sum", "mask"),
    ((3,), 37, 33, "content", "jsd", "mean", "labels"),
    ((), 64, 1, "structural", "cs", "sum", "labels"),
    ((3,), 100, 32, "joint", "jsd", "mean", "mask"),
]


def _problem(batch, n, d, omega, seed=0):
    u, _ = clustered(batch, n, d, seed=seed + n)
    v, _ = clustered(batch, n, d, seed=seed + n + 7)
    if omega == "labels":
        return u, v, {"bias": labels(batch, n, classes=3, seed=n)}
    if omega == "tolerance":
        return u, v, {"bias": labels(batch, n, classes=5, k=3, seed=n), "tolerance": 1}
    return u, v, {"mask": ref.pair_mask(labels(batch, n, classes=3, seed=n).unsqueeze(-1), 0)}


def _scalars(dtype, device="cpu"):
    return {
        k: torch.tensor(x, dtype=dtype, device=device, requires_grad=True)
        for k, x in (("alpha", 1.3), ("tau_y", 4.0), ("tau_b", 10.0))
    }


def _check(u, v, pairs, similarity, estimator, reduction, c=0.5, grad_seed=0):
    """Value and every gradient of the float32 Triton result against the float64 reference."""
    kw = dict(c=c, similarity=similarity, estimator=estimator, reduction=reduction)
    s64 = _scalars(torch.float64)
    u64, v64 = u.clone().requires_grad_(), v.clone().requires_grad_()
    expected = ck.cs_mutual_information(u64, v64, **pairs, **s64, **kw, backend="reference")
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    wrt64 = [u64, v64, *s64.values()]
    eg = torch.autograd.grad(expected, wrt64, g, allow_unused=True)

    dev_pairs = {k: (x.to(DEVICE) if isinstance(x, torch.Tensor) else x) for k, x in pairs.items()}
    s32 = _scalars(torch.float32, DEVICE)
    u32 = u.to(DEVICE, torch.float32).requires_grad_()
    v32 = v.to(DEVICE, torch.float32).requires_grad_()
    out = ck.cs_mutual_information(u32, v32, **dev_pairs, **s32, **kw, backend="triton")
    assert out.dtype == torch.float32 and out.shape == expected.shape
    og = torch.autograd.grad(out, [u32, v32, *s32.values()], g.to(DEVICE, torch.float32), allow_unused=True)
    assert rel_err(out.cpu(), expected) <= TOL
    for name, got, want in zip(["u", "v", "alpha", "tau_y", "tau_b"], og, eg, strict=True):
        if want is None:  # content similarity: the graph temperatures are unused
            assert got is None, name
            continue
        # d = 1: normalised rows are ±1, du and dv are 0 mathematically; the error is then absolute
        floor = 1.0 if name in ("u", "v") and u.shape[-1] == 1 else 1e-300
        err = rel_err(got.cpu(), want, floor=floor)
        assert err <= TOL, f"d{name}: {err:.3g}"


@pytest.mark.parametrize("batch,n,d,similarity,estimator,reduction,omega", CASES)
def test_fused_matches_float64_reference(batch, n, d, similarity, estimator, reduction, omega):
    u, v, pairs = _problem(batch, n, d, omega)
    _check(u, v, pairs, similarity, estimator, reduction)


# The large-N regime (fused Gram + softmax, tiled RWR and cross-entropy, tiled masked loss with Ω from the
# labels), forced at small N: every similarity, estimator and reduction, and every Ω source.
TILED_CASES = [
    ((2,), 100, 7, "joint", "cs", "mean", "tolerance"),
    ((), 37, 33, "structural", "jsd", "sum", "mask"),
    ((3,), 64, 16, "content", "jsd", "mean", "labels"),
    ((), 130, 5, "content", "cs", "sum", "tolerance"),
    ((3,), 64, 7, "structural", "cs", "sum", "labels"),  # large lse: dalpha with random-sign weights
    ((1,), 256, 32, "joint", "jsd", "mean", "tolerance"),
]


@pytest.mark.parametrize("batch,n,d,similarity,estimator,reduction,omega", TILED_CASES)
def test_tiled_regime_matches_float64_reference(monkeypatch, batch, n, d, similarity, estimator, reduction, omega):
    monkeypatch.setattr(tmi, "SMALL_N_OVERRIDE", 0)
    u, v, pairs = _problem(batch, n, d, omega)
    _check(u, v, pairs, similarity, estimator, reduction, grad_seed=n)


@pytest.mark.parametrize("similarity,estimator,reduction", [("joint", "cs", "mean"), ("structural", "jsd", "sum")])
def test_tiled_regime_empty_side(monkeypatch, similarity, estimator, reduction):
    monkeypatch.setattr(tmi, "SMALL_N_OVERRIDE", 0)
    u, v, _ = _problem((2,), 20, 7, "labels")
    _check(u, v, {"bias": torch.zeros(2, 20, dtype=torch.int64)}, similarity, estimator, reduction)


@pytest.mark.parametrize("c", [0.15, 0.85])
def test_other_restart_probabilities(c):
    u, v, pairs = _problem((2,), 37, 7, "labels")
    _check(u, v, pairs, "joint", "cs", "mean", c=c)


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_empty_side_contributes_zero_with_finite_gradients(estimator, reduction):
    # one bias value in the whole batch: ¬Ω is empty
    u, v, _ = _problem((2,), 20, 7, "labels")
    _check(u, v, {"bias": torch.zeros(2, 20, dtype=torch.int64)}, "joint", estimator, reduction)


def test_large_scores_do_not_overflow():
    u, v, pairs = _problem((), 16, 7, "labels")
    kw = dict(tau_y=10.0, tau_b=10.0, similarity="content")
    out = ck.cs_mutual_information(u.float(), v.float(), **pairs, alpha=1e4, **kw, backend="triton")
    expected = ck.cs_mutual_information(u, v, **pairs, alpha=1e4, **kw, backend="reference")
    assert torch.isfinite(out).all()
    assert rel_err(out, expected) <= TOL


def test_non_contiguous_inputs_and_stride_zero_gradient():
    u, v, pairs = _problem((3,), 37, 7, "labels")
    ut = u.transpose(0, 1).contiguous().transpose(0, 1).float().requires_grad_()
    vt = v.transpose(-1, -2).contiguous().transpose(-1, -2).float().requires_grad_()
    assert not ut.is_contiguous() and not vt.is_contiguous()
    kw = dict(alpha=1.3, tau_y=4.0, tau_b=6.0)
    ck.cs_mutual_information(ut, vt, **pairs, **kw, backend="triton").sum().backward()  # stride-0 grad
    ur, vr = u.clone().requires_grad_(), v.clone().requires_grad_()
    ck.cs_mutual_information(ur, vr, **pairs, **kw, backend="reference").sum().backward()
    assert rel_err(ut.grad, ur.grad) <= TOL and rel_err(vt.grad, vr.grad) <= TOL


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_upcast_and_returned_in_input_dtype(dtype):
    u, v, pairs = _problem((2,), 24, 7, "labels")
    ul, vl = u.to(dtype).requires_grad_(), v.to(dtype).requires_grad_()
    out = ck.cs_mutual_information(ul, vl, **pairs, alpha=1.0, tau_y=10.0, tau_b=10.0, backend="triton")
    assert out.dtype == dtype
    gu, gv = torch.autograd.grad(out.sum(), (ul, vl))
    assert gu.dtype == dtype and gv.dtype == dtype
    expected = ck.cs_mutual_information(ul.double(), vl.double(), **pairs, alpha=1.0, tau_y=10.0, tau_b=10.0)
    assert rel_err(out, expected) <= 2 * torch.finfo(dtype).eps


def test_opcheck():
    u, v, pairs = _problem((2,), 12, 5, "tolerance")
    s = _scalars(torch.float32)
    args = (u.float().requires_grad_(), v.float().requires_grad_(), pairs["bias"], None, 1, *s.values())
    torch.library.opcheck(tmi.cs_mutual_information_op, (*args, 0.5, "joint", "cs", "mean"))
    mask = ref.pair_mask(pairs["bias"], 1)
    masked = (*args[:2], None, mask, 0, *s.values(), 0.5, "joint", "jsd", "sum")
    torch.library.opcheck(tmi.cs_mutual_information_op, masked)


def test_compiles_with_fullgraph():
    u, v, pairs = _problem((2,), 12, 5, "labels")
    u32 = u.float().requires_grad_()
    s = _scalars(torch.float32)

    def fn(u, v, alpha, tau_y, tau_b):
        return ck.cs_mutual_information(u, v, **pairs, alpha=alpha, tau_y=tau_y, tau_b=tau_b, backend="triton").sum()

    value = torch.compile(fn, fullgraph=True)(u32, v.float(), *s.values())
    grads = torch.autograd.grad(value, [u32, *s.values()])
    s64 = _scalars(torch.float64)
    u64 = u.clone().requires_grad_()
    expected = ck.cs_mutual_information(u64, v, **pairs, **s64, backend="reference").sum()
    eg = torch.autograd.grad(expected, [u64, *s64.values()])
    assert rel_err(value, expected) <= TOL
    for got, want in zip(grads, eg, strict=True):
        assert rel_err(got, want) <= TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="large N needs a GPU (the interpreter is slow)")
@pytest.mark.parametrize("n", [512, 1024, 4096])
def test_large_n_on_gpu(n):
    u, v, pairs = _problem((), n, 32, "labels")
    _check(u, v, pairs, "joint", "cs", "mean")
