"""The fused C++ CPU estimator against the float64 reference."""

import itertools

import pytest
import torch
from _helpers import assert_matches, clustered, labels, rel_err

import csad_kernels as ck
import csad_kernels.reference as ref

OPTIONS = list(itertools.product(["joint", "content", "structural"], ["cs", "jsd"], ["mean", "sum"]))
SHAPES = [((), 2, 1), ((3,), 37, 7), ((), 64, 32), ((3,), 64, 7), ((3,), 100, 33), ((), 130, 7), ((3,), 256, 32)]
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}


def _case(batch, n, d, dtype, seed=0):
    u, _ = clustered(batch, n, d, seed=seed)
    v, _ = clustered(batch, n, d, seed=seed + 1)
    bias = labels(batch, n, classes=8, k=3, seed=seed)
    return u.to(dtype), v.to(dtype), bias


def _value_and_grads(u, v, backend, pairs, **kw):
    u = u.detach().clone().requires_grad_()
    v = v.detach().clone().requires_grad_()
    scalars = [torch.tensor(x, dtype=u.dtype, requires_grad=True) for x in (1.3, 8.0, 12.0)]
    out = ck.cs_mutual_information(
        u, v, **pairs, alpha=scalars[0], tau_y=scalars[1], tau_b=scalars[2], backend=backend, **kw
    )
    # random signs across the batch: the gradients of alpha and tau sum over problems and cancel,
    # which exposes round-off that all-positive weights would hide
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(out.dtype)
    grads = torch.autograd.grad((out * weights).sum(), [u, v, *scalars], allow_unused=True)
    return out, [g if g is not None else torch.zeros((), dtype=u.dtype) for g in grads]


def _assert_matches_reference(u, v, pairs, dtype, **kw):
    out, grads = _value_and_grads(u.to(dtype), v.to(dtype), "cpu", pairs, **kw)
    expected, expected_grads = _value_and_grads(u.double(), v.double(), "reference", pairs, **kw)
    same_precision, same_precision_grads = _value_and_grads(u.to(dtype), v.to(dtype), "reference", pairs, **kw)
    assert out.dtype == dtype
    names = ["I", "u", "v", "alpha", "tau_y", "tau_b"]
    for name, *values in zip(
        names, [out, *grads], [expected, *expected_grads], [same_precision, *same_precision_grads], strict=True
    ):
        assert_matches(*values, tol=TOLERANCE[dtype], name=name)


@pytest.mark.parametrize("batch,n,d", SHAPES)
@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
def test_float32_matches_float64_reference(batch, n, d, similarity, estimator, reduction):
    u, v, bias = _case(batch, n, d, torch.float64, seed=n)
    kw = dict(similarity=similarity, estimator=estimator, reduction=reduction)
    _assert_matches_reference(u, v, {"bias": bias}, torch.float32, tolerance=1, **kw)


@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
def test_float64_matches_reference_closely(similarity, estimator, reduction):
    u, v, bias = _case((2,), 45, 9, torch.float64)
    kw = dict(similarity=similarity, estimator=estimator, reduction=reduction)
    _assert_matches_reference(u, v, {"bias": bias}, torch.float64, tolerance=1, **kw)


@pytest.mark.parametrize("pairs", ["mask", "single labels", "empty negative side", "empty positive side"])
def test_pair_specifications(pairs):
    u, v, bias = _case((2,), 33, 8, torch.float64)
    spec = {
        "mask": {"mask": ref.pair_mask(bias, 1)},
        "single labels": {"bias": bias[..., 0]},
        "empty negative side": {"bias": torch.zeros(2, 33, dtype=torch.long)},
        "empty positive side": {"mask": torch.zeros(2, 33, 33, dtype=torch.bool)},
    }[pairs]
    for estimator in ("cs", "jsd"):
        _assert_matches_reference(u, v, spec, torch.float32, estimator=estimator)


@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
def test_gradcheck(similarity, estimator, reduction):
    u, v, bias = _case((2,), 6, 3, torch.float64)
    scalars = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (1.3, 3.0, 4.0)]

    def fn(u, v, alpha, tau_y, tau_b):
        return ck.cs_mutual_information(
            u,
            v,
            bias,
            alpha=alpha,
            tau_y=tau_y,
            tau_b=tau_b,
            tolerance=1,
            similarity=similarity,
            estimator=estimator,
            reduction=reduction,
            backend="cpu",
        )

    assert torch.autograd.gradcheck(fn, (u.requires_grad_(), v.requires_grad_(), *scalars))


def test_non_contiguous_inputs_stride_zero_gradient_and_zero_rows():
    u, v, bias = _case((3,), 20, 6, torch.float32)
    u[1, 4] = 0.0
    u_t = u.transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    assert not u_t.is_contiguous()
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0, tolerance=1)
    ck.cs_mutual_information(u_t, v, bias, backend="cpu", **kw).sum().backward()  # grad is an expanded 1
    u_ref = u.double().requires_grad_()
    ck.cs_mutual_information(u_ref, v.double(), bias, backend="reference", **kw).sum().backward()
    assert rel_err(u_t.grad, u_ref.grad) <= 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    u, v, bias = _case((), 40, 16, dtype)
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0, tolerance=1)
    out = ck.cs_mutual_information(u, v, bias, backend="cpu", **kw)
    assert out.dtype == dtype
    expected = ck.cs_mutual_information(u.float(), v.float(), bias, backend="cpu", **kw)
    torch.testing.assert_close(out, expected.to(dtype))


def test_opcheck():
    u, v, bias = _case((2,), 9, 4, torch.float32)
    for similarity in ("joint", "content"):
        args = (
            u.requires_grad_(),
            v.requires_grad_(),
            bias.unsqueeze(-1) if bias.dim() == 2 else bias,
            None,
            1,
            torch.tensor(1.0, requires_grad=True),
            torch.tensor(10.0, requires_grad=True),
            torch.tensor(10.0, requires_grad=True),
            0.5,
            similarity,
            "cs",
            "mean",
        )
        torch.library.opcheck(torch.ops.csad.cs_mutual_information_forward.default, args)


def test_compiles_with_fullgraph():
    u, v, bias = _case((2,), 24, 8, torch.float32)
    u.requires_grad_()
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0, tolerance=1, backend="cpu")
    compiled = torch.compile(lambda a, b, g: ck.cs_mutual_information(a, b, g, **kw), fullgraph=True)
    value = compiled(u, v, bias)
    (grad,) = torch.autograd.grad(value.sum(), u)
    u_ref = u.detach().double().requires_grad_()
    expected = ck.cs_mutual_information(u_ref, v.double(), bias, **{**kw, "backend": "reference"})
    (expected_grad,) = torch.autograd.grad(expected.sum(), u_ref)
    assert rel_err(value, expected) <= 1e-4
    assert rel_err(grad, expected_grad) <= 1e-4


def test_alpha_gradient_keeps_float32_accuracy_when_problems_cancel():
    # Large log-sum-exps (reduction="sum") once lost ~1e-6 relative per problem in dI/dalpha when
    # kept in float32; with random-sign weights over the batch that became 2e-4 of the total.
    u, _ = clustered((3,), 64, 7, seed=64)
    v, _ = clustered((3,), 64, 7, seed=71)
    bias = labels((3,), 64, classes=3, seed=64)
    kw = dict(similarity="structural", estimator="cs", reduction="sum")
    _assert_matches_reference(u, v, {"bias": bias}, torch.float32, **kw)


_THREADED_RUN = """
import torch
import csad_kernels as ck
from _helpers import clustered, labels
{threads}
u, _ = clustered((), 256, 16, seed=0)
v, _ = clustered((), 256, 16, seed=1)
out = ck.cs_mutual_information(
    u.float(), v.float(), labels((), 256, seed=0), alpha=1.0, tau_y=10.0, tau_b=10.0, backend="cpu"
)
assert torch.isfinite(out), out
e = ck.softmax_adjacency(ck.cosine_similarity(u, u), 10.0).float().expand(3, 256, 256)
assert torch.isfinite(ck.rwr(e, backend="cpu")).all()
"""


@pytest.mark.parametrize("threads", [1, 2, None])
def test_fused_op_returns_at_every_thread_count(threads):
    # Regression (issue 15): concurrent LAPACK inverses (inside at::parallel_for, or ATen's batched inverse)
    # made MKL fail or hang at 2 threads.
    import pathlib
    import subprocess
    import sys

    setup = "" if threads is None else f"torch.set_num_threads({threads})"
    here = pathlib.Path(__file__).parent
    env = {**__import__("os").environ, "PYTHONPATH": f"{here}{__import__('os').pathsep}{here.parent}"}
    result = subprocess.run(
        [sys.executable, "-c", _THREADED_RUN.format(threads=setup)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "oneMKL ERROR" not in result.stderr + result.stdout


# ---------------------------------------------------------------------------------------------
# the backward computes and the forward keeps only what the inputs that require grad need

DIFFERENTIABLE = ("u", "v", "alpha", "tau_y", "tau_b")
GEMMS = ("aten::bmm", "aten::baddbmm", "aten::baddbmm_", "aten::mm", "aten::matmul")


def _fused_inputs(requiring: set[str], similarity: str, n: int = 12, d: int = 5):
    """The differentiable inputs by name (those in ``requiring`` require grad) and the forward op's arguments."""
    u, v, bias = _case((2,), n, d, torch.float64)
    scalars = [torch.tensor(x, dtype=torch.float64) for x in (1.3, 8.0, 12.0)]
    inputs = dict(zip(DIFFERENTIABLE, [u, v, *scalars], strict=True))
    inputs = {k: x.requires_grad_(k in requiring) for k, x in inputs.items()}
    args = (inputs["u"], inputs["v"], bias, None, 1, inputs["alpha"], inputs["tau_y"], inputs["tau_b"], 0.5)
    return inputs, (*args, similarity, "cs", "mean")


def _backward_gemms(requiring: set[str], similarity: str) -> int:
    """GEMMs (ATen calls recorded by the profiler) that the fused op's backward runs."""
    inputs, args = _fused_inputs(requiring, similarity)
    value, _ = torch.ops.csad.cs_mutual_information_forward(*args)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        torch.autograd.grad(value.sum(), [inputs[k] for k in sorted(requiring)], allow_unused=True)
    names = [event.name for event in profile.events()]
    assert "csad::cs_mutual_information_backward" in names
    return sum(name in GEMMS for name in names)


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
def test_backward_runs_no_gemm_for_inputs_that_do_not_require_grad(similarity):
    assert _backward_gemms({"alpha"}, similarity) == 0  # dI/dalpha needs the scores only
    every = _backward_gemms(set(DIFFERENTIABLE), similarity)
    one_side = _backward_gemms({"u"}, similarity)
    assert 0 < one_side < every
    assert _backward_gemms({"v"}, similarity) == one_side
    if similarity != "content":
        # tau_y's gradient goes through E_y's side only, and adds nothing into dL/du
        assert 0 < _backward_gemms({"tau_y"}, similarity) < one_side


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
def test_forward_keeps_only_the_state_the_requested_gradients_read(similarity):
    from csad_kernels.cpu.cs_mutual_information import EstimatorState

    def kept(requiring):
        _, args = _fused_inputs(requiring, similarity)
        value, _ = torch.ops.csad.cs_mutual_information_forward(*args)
        state = EstimatorState(*value.grad_fn.saved_tensors[: len(EstimatorState._fields)])
        return {name for name, t in state._asdict().items() if t is not None}

    assert kept({"alpha"}) == {"scores", "stats"}
    graphs = {"e_y", "e_b", "r_y", "r_b", "w_row_sums_y", "w_row_sums_b"}  # empty for "content": not kept
    assert kept(set(DIFFERENTIABLE)) == set(EstimatorState._fields) - (graphs if similarity == "content" else set())
    u_only = kept({"u"})
    assert "v_inv_norms" not in u_only and "u_inv_norms" in u_only
    if similarity != "content":
        assert {"e_b", "w_row_sums_b"}.isdisjoint(u_only)


@pytest.mark.parametrize("similarity", ["joint", "content", "structural"])
@pytest.mark.parametrize("requiring", [{"u"}, {"v"}, {"alpha"}, {"tau_y"}, {"tau_b"}, {"u", "tau_b"}])
def test_partial_gradients_equal_the_full_backwards(similarity, requiring):
    inputs, args = _fused_inputs(set(DIFFERENTIABLE), similarity)
    value, _ = torch.ops.csad.cs_mutual_information_forward(*args)
    every_grad = torch.autograd.grad(value.sum(), list(inputs.values()), allow_unused=True)
    full = dict(zip(DIFFERENTIABLE, every_grad, strict=True))
    partial_inputs, partial_args = _fused_inputs(requiring, similarity)
    partial_value, _ = torch.ops.csad.cs_mutual_information_forward(*partial_args)
    wanted = sorted(requiring)
    got = torch.autograd.grad(partial_value.sum(), [partial_inputs[k] for k in wanted], allow_unused=True)
    for name, grad in zip(wanted, got, strict=True):
        assert (grad is None) == (full[name] is None), name
        if grad is not None:
            assert torch.equal(grad, full[name]), name


def test_backward_op_returns_none_for_gradients_not_asked_for():
    inputs, args = _fused_inputs(set(), "joint")
    value, state = torch.ops.csad.cs_mutual_information_forward(*args)
    only_scores = [None] * (len(state) - 2) + state[-2:]  # scores and stats

    def backward(output_mask):
        options = (args[2], None, 1, inputs["alpha"], inputs["tau_y"], inputs["tau_b"], 0.5, "joint", "cs", None, None)
        return torch.ops.csad.cs_mutual_information_backward(torch.ones_like(value), only_scores, *options, output_mask)

    grads = backward([False, False, True, False, False, False])
    assert grads[2] is not None and all(g is None for i, g in enumerate(grads) if i != 2)
    with pytest.raises(RuntimeError, match="need state field v_normalized"):
        backward([True, False, False, False, False, False])
