"""The Triton backend's own kernels and regimes, beyond the public ops' semantics (tests/test_op_*.py): the
fused Gram + softmax (gram_softmax) that the estimator tiles with, the RWR's factor count, the loss kernel's
per-side statistics, and the estimator's tiled regime forced at small N; against the float64 reference with
tests/_compare.py's rule. In the interpreter on a CPU, compiled on a GPU."""

import pytest
import torch
from _compare import assert_matches_reference
from _helpers import clustered, labels
from torch.utils._python_dispatch import TorchDispatchMode

import csad_kernels as ck
import csad_kernels.reference as ref

REASON = ck.unavailable_reason("triton")
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"backend 'triton' is unavailable: {REASON}")]

if REASON is None:
    import csad_kernels.triton.cross_sample_mi as tcsmi
    import csad_kernels.triton.cs_mutual_information as tmi
    import csad_kernels.triton.rwr as trwr
    import csad_kernels.triton.softmax_adjacency as tsm


def _gram_softmax(x, tau, backend):
    """gram_softmax on Triton; E = softmax_rows(tau · cos(x, x)) composed from the reference otherwise."""
    if backend == "triton":
        return tsm.gram_softmax(x, tau)
    return ref.softmax_adjacency(ref.cosine_similarity(x, x), tau)


def _check_gram_softmax(batch, n, d, seed):
    x, _ = clustered(batch, n, d, seed=seed)
    assert_matches_reference(
        _gram_softmax, {"x": x, "tau": torch.tensor(7.0, dtype=torch.float64)}, "triton", torch.float32, seed=seed
    )


@pytest.mark.parametrize("batch,n,d", [((), 2, 1), ((3,), 37, 7), ((), 130, 33), ((2,), 256, 32)])
def test_gram_softmax_matches_float64_reference(batch, n, d):
    # the estimator's tiled regime: E = softmax_rows(tau · xn xnᵀ) fused, the rows normalised in the kernels
    _check_gram_softmax(batch, n, d, seed=n)


@pytest.mark.parametrize("fma", [False, True], ids=["tensor-core-tiles", "ieee-tiles"])
@pytest.mark.parametrize("d", [32, 100])
def test_gram_softmax_with_the_gpu_launch_settings(monkeypatch, d, fma):
    # the interpreter normally gets big tiles; here the GPU's own (launch_settings.gram_launch: 64 x 32 or
    # 16 x 32 rows x columns with tensor-core dots, 32 x 64 or 16 x 32 with ieee) on a ragged N with several
    # row programs and column steps, forward and both gradients against the float64 reference
    import csad_kernels.triton.launch_settings as settings

    monkeypatch.setattr(settings, "interpreted", lambda: False)
    monkeypatch.setattr(settings, "fma_dots", lambda: fma)
    launch = settings.gram_launch(130, d)
    assert launch["BLOCK_R"] < 130 and launch["BLOCK_C"] < 130
    _check_gram_softmax((2,), 130, d, seed=d)


def test_gram_softmax_opcheck():
    x = torch.randn(2, 9, 5)
    x[0, 3] = 0.0  # a zero row: the normalisation's eps branch
    torch.library.opcheck(tsm.gram_softmax_op, (x.requires_grad_(), torch.tensor(3.0, requires_grad=True)))


def test_gram_softmax_with_one_tau_per_graph_matches_separate_calls():
    # the tiled estimator batches its two graphs: x = [u; v] (2, B, N, d), tau = [tau_y, tau_b]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 40, 8, generator=g, requires_grad=True)
    tau = torch.tensor([7.0, 3.0], requires_grad=True)
    out = tsm.gram_softmax(x, tau)
    w = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * w).sum(), (x, tau))
    for i in range(2):
        xi, ti = x[i].detach().requires_grad_(), tau[i].detach().requires_grad_()
        oi = tsm.gram_softmax(xi, ti)
        gi = torch.autograd.grad((oi * w[i]).sum(), (xi, ti))
        assert torch.allclose(out[i], oi, rtol=1e-6, atol=1e-7)
        assert torch.allclose(grads[0][i], gi[0], rtol=1e-5, atol=1e-6)
        assert torch.allclose(grads[1][i], gi[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="tau must be 0-d or of shape"):
        tsm.gram_softmax(x, torch.ones(3))


def test_rwr_factor_count_follows_the_error_bound():
    assert trwr.num_factors(0.5) == 5
    for c in (0.15, 0.5, 0.85, 0.99):
        k = trwr.num_factors(c)
        assert c ** (2**k) / (1 - c) <= 1e-8 < c ** (2 ** (k - 1)) / (1 - c)


@pytest.mark.parametrize("estimator,reduction", [("cs", "mean"), ("jsd", "sum"), ("ms", "mean"), ("ms", "sum")])
def test_loss_statistics_of_an_empty_side_are_zero(estimator, reduction):
    # ¬Ω empty (one bias value): the side contributes exactly 0, with zero weight (and zero scale gradient for ms)
    m = torch.randn(3, 19, 19)
    bias = torch.zeros(3, 19, 1, dtype=torch.int64)
    scales = (None, torch.tensor(0.7), torch.tensor(0.7)) if estimator == "ms" else ()
    _, stats = tcsmi.cross_sample_mi_op(m, bias, None, 0, estimator, reduction, *scales)
    if estimator == "ms":
        assert stats.shape == (3, 6)
    zero_columns = (1, 3, 5) if estimator == "ms" else (1, 3)
    assert all(torch.all(stats[:, c] == 0) for c in zero_columns)


def _estimator_case(batch, n, d, similarity, estimator, reduction, source, groups=False, alpha_neg=None):
    u, _ = clustered(batch, n, d, seed=n)
    v, _ = clustered(batch, n, d, seed=n + 7)
    if source == "labels":
        spec = {"bias": labels(batch, n, classes=3, seed=n)}
    elif source == "tolerance":
        spec = {"bias": labels(batch, n, classes=5, k=3, seed=n), "tolerance": 1}
    else:
        spec = {"mask": ref.pair_mask(labels(batch, n, classes=3, seed=n).unsqueeze(-1), 0)}
    if groups:
        spec["groups"] = labels(batch, n, classes=2, seed=n + 11)
    scalars = {"alpha": 1.3, "tau_y": 4.0, "tau_b": 10.0} | ({} if alpha_neg is None else {"alpha_neg": alpha_neg})
    inputs = {"u": u, "v": v, **{k: torch.tensor(x, dtype=torch.float64) for k, x in scalars.items()}}

    def fn(u, v, alpha, tau_y, tau_b, *alpha_neg, backend):
        kw = dict(alpha=alpha, tau_y=tau_y, tau_b=tau_b, alpha_neg=alpha_neg[0] if alpha_neg else None)
        on_device = {k: x.to(u.device) if isinstance(x, torch.Tensor) else x for k, x in spec.items()}
        return ck.cs_mutual_information(
            u, v, **on_device, **kw, similarity=similarity, estimator=estimator, reduction=reduction, backend=backend
        )

    return fn, inputs


# The large-N regime (fused Gram + softmax, tiled RWR and cross-entropy, tiled masked loss with Ω from the
# labels), forced at small N: every similarity, estimator and reduction, every Ω source, groups and alpha_neg.
TILED_CASES = [
    ((2,), 100, 7, "joint", "cs", "mean", "tolerance", False, None),
    ((), 37, 33, "structural", "jsd", "sum", "mask", False, None),
    ((3,), 64, 16, "content", "jsd", "mean", "labels", False, None),
    ((), 130, 5, "content", "cs", "sum", "tolerance", False, None),
    ((3,), 64, 7, "structural", "cs", "sum", "labels", False, None),  # large lse: dalpha with random-sign weights
    ((1,), 256, 32, "joint", "jsd", "mean", "tolerance", False, None),
    ((2,), 37, 7, "joint", "ms", "mean", "tolerance", True, 0.6),
    ((), 64, 16, "content", "ms", None, "labels", False, None),
    ((), 130, 5, "structural", "ms", "sum", "mask", True, 2.0),
    ((), 130, 7, "joint", "ms", None, "labels", False, 0.6),
    ((2,), 64, 7, "joint", "jsd", "mean", "labels", True, None),
    ((), 130, 7, "content", "cs", "sum", "labels", True, None),
]


@pytest.mark.parametrize("batch,n,d,similarity,estimator,reduction,source,groups,alpha_neg", TILED_CASES)
def test_tiled_estimator_matches_float64_reference(
    monkeypatch, batch, n, d, similarity, estimator, reduction, source, groups, alpha_neg
):
    monkeypatch.setattr(tmi, "SMALL_N_OVERRIDE", 0)
    fn, inputs = _estimator_case(batch, n, d, similarity, estimator, reduction, source, groups, alpha_neg)
    assert_matches_reference(fn, inputs, "triton", torch.float32, seed=n)


def _empty_sides(kind):
    """Ω specifications with an empty side in some problems of a (2, 20) batch."""
    if kind == "¬Ω empty everywhere":
        return {"bias": torch.zeros(2, 20, dtype=torch.int64)}
    if kind == "¬Ω empty in problem 0, ¬Ω ∩ G in problem 1":
        bias, groups = labels((2,), 20, classes=3, seed=2), labels((2,), 20, classes=2, seed=3)
        bias[0] = 0
        groups[1] = torch.arange(20)
        return {"bias": bias, "groups": groups}
    mask = ref.pair_mask(labels((2,), 20, classes=3, seed=4).unsqueeze(-1), 0)
    mask[1] = False  # Ω empty in problem 1
    return {"mask": mask}


@pytest.mark.parametrize(
    "kind", ["¬Ω empty everywhere", "¬Ω empty in problem 0, ¬Ω ∩ G in problem 1", "Ω empty in problem 1"]
)
@pytest.mark.parametrize(
    "similarity,estimator,reduction",
    [("joint", "cs", "mean"), ("structural", "jsd", "sum"), ("joint", "ms", "mean"), ("content", "ms", "sum")],
)
def test_tiled_estimator_with_empty_sides(monkeypatch, similarity, estimator, reduction, kind):
    monkeypatch.setattr(tmi, "SMALL_N_OVERRIDE", 0)
    alpha_neg = 0.6 if estimator == "ms" else None
    _, inputs = _estimator_case((2,), 20, 7, similarity, estimator, reduction, "labels", alpha_neg=alpha_neg)
    spec = _empty_sides(kind)

    def fn(u, v, *scalars, backend):
        kw = dict(zip(("alpha", "tau_y", "tau_b", "alpha_neg"), scalars, strict=False))
        kw |= dict(similarity=similarity, estimator=estimator, reduction=reduction, backend=backend)
        return ck.cs_mutual_information(u, v, **{k: x.to(u.device) for k, x in spec.items()}, **kw)

    assert_matches_reference(fn, inputs, "triton", torch.float32)


class _CountCustomOps(TorchDispatchMode):
    """Records the csad_triton ops that run, with their arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "csad_triton":
            self.calls.append((func._opname, args))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("op", ["cosine_similarity", "symmetric_cross_entropy"])
@pytest.mark.parametrize("wanted", [(True, False), (False, True)], ids=["x-only", "y-only"])
def test_pair_ops_compute_only_the_gradients_asked_for(op, wanted):
    # the backward launches the row-gradient kernel once per input that requires a gradient, and that
    # gradient is bitwise the one computed when both are asked for
    x, y = torch.rand(2, 9, 5) + 0.1, torch.rand(2, 7, 5) + 0.1
    if op == "symmetric_cross_entropy":
        x, y = x / x.sum(-1, keepdim=True), y / y.sum(-1, keepdim=True)
    grad = torch.randn(2, 9, 7)
    both = [t.clone().requires_grad_() for t in (x, y)]
    getattr(ck, op)(*both, backend="triton").backward(grad)
    one = [t.clone().requires_grad_(w) for t, w in zip((x, y), wanted, strict=True)]
    out = getattr(ck, op)(*one, backend="triton")
    with _CountCustomOps() as counted:
        out.backward(grad)
    row_grads = [args[3] for name, args in counted.calls if name == f"{op}_row_grad"]
    assert row_grads == [wanted[1]]  # transpose_g is True for y's gradient only
    for full, partial, w in zip(both, one, wanted, strict=True):
        assert (partial.grad is not None) == w
        if w:
            assert torch.equal(partial.grad, full.grad)
