"""Triton cross-sample MI loss from pair scores against the float64 reference (interpreter on CPU; GPU compiled)."""

import pytest
import torch
from _helpers import assert_matches, clustered, labels
from _triton_ops import DEVICE, SKIP

import csad_kernels as ck
import csad_kernels.reference as ref
import csad_kernels.triton.cross_sample_mi as tcsmi

pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))

OPTIONS = [("cs", "mean"), ("cs", "sum"), ("jsd", "mean"), ("jsd", "sum")]
# every N with every estimator × reduction; the batch and the Ω source rotate over the cases
SHAPES = [((1,), 2), ((3,), 37), ((1,), 64), ((3,), 100), ((3,), 130), ((1,), 256)]
SOURCES = ["tolerance", "labels", "mask"]
CASES = [
    (batch, n, estimator, reduction, SOURCES[(i + j) % len(SOURCES)])
    for i, (batch, n) in enumerate(SHAPES)
    for j, (estimator, reduction) in enumerate(OPTIONS)
]


def _scores(batch, n, scale=3.0, seed=0):
    """Pair scores of clustered embeddings plus noise, rounded to float32 (so both sides see the same input)."""
    u, _ = clustered(batch, n, 5, seed=seed + n)
    v, _ = clustered(batch, n, 5, seed=seed + n + 1)
    noise = torch.randn(*batch, n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (scale * ref.cosine_similarity(u, v) + noise).float().double()


def _pairs(batch, n, source):
    if source == "labels":
        return {"bias": labels(batch, n, classes=3, seed=n)}
    if source == "tolerance":
        return {"bias": labels(batch, n, classes=5, k=3, seed=n), "tolerance": 1}
    return {"mask": ref.pair_mask(labels(batch, n, classes=4, k=2, seed=n), 1)}


def _check(m64, pairs, estimator, reduction, grad_seed=0):
    """Value and gradient of the float32 Triton loss against the float64 reference, with random-sign
    upstream gradients across the batch (they make the per-problem errors cancel less)."""
    kw = dict(estimator=estimator, reduction=reduction)
    m_exact = m64.clone().requires_grad_()
    exact = ck.cross_sample_mi(m_exact, **pairs, **kw, backend="reference")
    g = torch.randn(exact.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    (g_exact,) = torch.autograd.grad(exact, m_exact, g)

    m_plain = m64.float().requires_grad_()
    plain = ck.cross_sample_mi(m_plain, **pairs, **kw, backend="reference")
    (g_plain,) = torch.autograd.grad(plain, m_plain, g.float())

    dev_pairs = {k: (x.to(DEVICE) if isinstance(x, torch.Tensor) else x) for k, x in pairs.items()}
    m32 = m64.to(DEVICE, torch.float32).requires_grad_()
    out = ck.cross_sample_mi(m32, **dev_pairs, **kw, backend="triton")
    assert out.dtype == torch.float32 and out.shape == exact.shape
    assert torch.isfinite(out).all()
    (g_out,) = torch.autograd.grad(out, m32, g.to(DEVICE, torch.float32))
    assert torch.isfinite(g_out).all()
    assert_matches(out.cpu(), exact, plain, name="I")
    assert_matches(g_out.cpu(), g_exact, g_plain, name="dI/dm")
    return out.cpu(), g_out.cpu()


@pytest.mark.parametrize("batch,n,estimator,reduction,source", CASES)
def test_matches_float64_reference(batch, n, estimator, reduction, source):
    _check(_scores(batch, n), _pairs(batch, n, source), estimator, reduction, grad_seed=n)


@pytest.mark.parametrize("estimator,reduction", OPTIONS)
def test_empty_sides_contribute_zero_with_zero_gradient(estimator, reduction):
    m = _scores((3,), 19)
    # ¬Ω empty: one bias value in every problem; Ω empty: an all-False mask (problem 1 only)
    same = {"bias": torch.zeros(3, 19, dtype=torch.int64)}
    _check(m, same, estimator, reduction)
    mask = ref.pair_mask(labels((3,), 19, classes=3, seed=1).unsqueeze(-1), 0)
    mask[1] = False
    _, grad_mask = _check(m, {"mask": mask}, estimator, reduction, grad_seed=1)
    assert torch.all(grad_mask[1] != 0)  # the non-empty side still gets its gradient
    # the empty side alone: exactly 0, and the stats give its entries a zero weight
    _, stats = tcsmi.cross_sample_mi_op(m.float(), same["bias"].unsqueeze(-1), None, 0, estimator, reduction)
    assert torch.all(stats[:, 1] == 0) and torch.all(stats[:, 3] == 0)


@pytest.mark.parametrize("estimator,reduction", OPTIONS)
def test_large_scores_do_not_overflow(estimator, reduction):
    # |M| up to 1e4: log(1 + mean e^x) through the log-sum-exp, no overflow to inf
    m = (1e4 * torch.tanh(_scores((3,), 40, scale=1.0))).float().double()
    assert m.abs().max() > 5e3
    _check(m, _pairs((3,), 40, "tolerance"), estimator, reduction, grad_seed=3)


def test_single_labels_and_label_axis_agree():
    m = _scores((2,), 50).float()
    bias = labels((2,), 50, classes=4, seed=5)
    a = ck.cross_sample_mi(m, bias, backend="triton")
    b = ck.cross_sample_mi(m, bias.unsqueeze(-1), backend="triton")
    c = ck.cross_sample_mi(m, mask=ref.pair_mask(bias.unsqueeze(-1), 0), backend="triton")
    assert torch.equal(a, b) and torch.allclose(a, c, rtol=1e-6, atol=0)


def test_non_contiguous_and_low_precision_scores():
    m = _scores((3,), 37)
    bias = labels((3,), 37, classes=3, seed=2)
    mt = m.float().mT.contiguous().mT.requires_grad_()
    assert not mt.is_contiguous()
    out = ck.cross_sample_mi(mt, bias, backend="triton")
    (grad,) = torch.autograd.grad(out.sum(), mt)
    m64 = m.clone().requires_grad_()
    expected = ck.cross_sample_mi(m64, bias, backend="reference")
    (eg,) = torch.autograd.grad(expected.sum(), m64)
    assert_matches(out, expected, expected.float())
    assert_matches(grad, eg, eg.float())
    half = ck.cross_sample_mi(m.to(torch.bfloat16), bias, backend="triton")
    assert half.dtype == torch.bfloat16


def test_opcheck():
    m = _scores((2,), 12).float()
    bias = labels((2,), 12, classes=5, k=3, seed=4)
    torch.library.opcheck(tcsmi.cross_sample_mi_op, (m.requires_grad_(), bias, None, 1, "cs", "mean"))
    mask = ref.pair_mask(bias, 1)
    torch.library.opcheck(tcsmi.cross_sample_mi_op, (m, None, mask, 0, "jsd", "sum"))


def test_compiles_with_fullgraph():
    m = _scores((2,), 20)
    bias = labels((2,), 20, classes=5, k=3, seed=6)

    def fn(m):
        return ck.cross_sample_mi(m, bias, tolerance=1, backend="triton").sum()

    m32 = m.float().requires_grad_()
    value = torch.compile(fn, fullgraph=True)(m32)
    (grad,) = torch.autograd.grad(value, m32)
    m64 = m.clone().requires_grad_()
    expected = ck.cross_sample_mi(m64, bias, tolerance=1, backend="reference").sum()
    (eg,) = torch.autograd.grad(expected, m64)
    assert_matches(value, expected, expected.float())
    assert_matches(grad, eg, eg.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="large N needs a GPU (the interpreter is slow)")
@pytest.mark.parametrize("n", [512, 1024, 4096])
def test_large_n_on_gpu(n):
    for estimator, reduction in OPTIONS:
        _check(_scores((2,), n), _pairs((2,), n, "tolerance"), estimator, reduction)


@pytest.mark.parametrize("estimator,reduction", [("cs", "mean"), ("jsd", "sum")])
def test_side_empty_in_some_row_blocks_only(estimator, reduction):
    # the first rows lie wholly in Ω: their programs' ¬Ω partials are empty (max -inf) and must combine to nothing
    mask = ref.pair_mask(labels((2,), 150, classes=3, seed=8).unsqueeze(-1), 0)
    mask[:, :70] = True
    mask[1, 100:] = False
    _check(_scores((2,), 150, seed=8), {"mask": mask}, estimator, reduction, grad_seed=8)
