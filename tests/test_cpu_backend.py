"""The C++ CPU backend's own behaviour, beyond the public ops' semantics (tests/test_op_*.py): the fused
estimator returns at every thread count, and its backward computes (and its forward keeps) only what the inputs
that require grad need."""

import pytest
import torch
from _helpers import clustered, labels, probabilities

import csad_kernels as ck
import csad_kernels.reference as ref

REASON = ck.unavailable_reason("cpu")
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"backend 'cpu' is unavailable: {REASON}")


def _case(batch, n, d, dtype, seed=0):
    u, _ = clustered(batch, n, d, seed=seed)
    v, _ = clustered(batch, n, d, seed=seed + 1)
    bias = labels(batch, n, classes=8, k=3, seed=seed)
    return u.to(dtype), v.to(dtype), bias


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
    from csad_kernels.extension.cs_mutual_information import EstimatorState

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


# ---------------------------------------------------------------------------------------------
# the small ops' backwards (csrc/<op>.cpp) likewise compute only the gradients that output_mask asks for


def _small_op_cases() -> dict[str, tuple]:
    """Per op: (forward op, its two differentiable inputs, backward op, the backward's arguments before the mask)."""
    x, _ = clustered((2,), 9, 4)
    y, _ = clustered((2,), 7, 4, seed=1)
    s = ref.cosine_similarity(x, x)
    tau = torch.tensor(3.0, dtype=torch.float64)
    p = probabilities((2,), 9, 5)
    q = probabilities((2,), 7, 5, seed=1)
    g = torch.Generator().manual_seed(2)
    grad = torch.randn(2, 9, 7, generator=g, dtype=torch.float64)
    grad_s = torch.randn(2, 9, 9, generator=g, dtype=torch.float64)
    ops = torch.ops.csad
    return {
        "cosine_similarity": (ops.cosine_similarity, (x, y), ops.cosine_similarity_backward, (grad, x, y)),
        "softmax_adjacency": (
            ops.softmax_adjacency,
            (s, tau),
            ops.softmax_adjacency_backward,
            (grad_s, ref.softmax_adjacency(s, 3.0), s, tau),
        ),
        "symmetric_cross_entropy": (
            ops.symmetric_cross_entropy,
            (p, q),
            ops.symmetric_cross_entropy_backward,
            (grad, p, q),
        ),
    }


SMALL_OPS = ("cosine_similarity", "softmax_adjacency", "symmetric_cross_entropy")


@pytest.mark.parametrize("op", SMALL_OPS)
def test_small_op_backward_returns_only_the_gradients_asked_for(op):
    _, _, backward, args = _small_op_cases()[op]
    every = backward(*args, [True, True])
    assert all(g is not None for g in every)
    for index in (0, 1):
        mask = [i == index for i in (0, 1)]
        got = backward(*args, mask)
        assert got[1 - index] is None
        assert torch.equal(got[index], every[index])
    assert backward(*args, [False, False]) == (None, None)


def test_softmax_adjacency_backward_reads_s_only_for_dtau():
    _, _, backward, (grad, e, s, tau) = _small_op_cases()["softmax_adjacency"]
    grad_s, grad_tau = backward(grad, e, None, tau, [True, False])
    assert grad_tau is None
    assert torch.equal(grad_s, backward(grad, e, s, tau, [True, True])[0])
    with pytest.raises(RuntimeError, match="dtau needs s"):
        backward(grad, e, None, tau, [False, True])


def _small_op_grads(op: str, requiring: tuple[bool, bool]) -> tuple[list, int, list]:
    """The gradients of the inputs in ``requiring``, the GEMMs the backward ran and the tensors autograd saved."""
    forward, inputs, _, _ = _small_op_cases()[op]
    leaves = [t.detach().clone().requires_grad_(r) for t, r in zip(inputs, requiring, strict=True)]
    out = forward(*leaves)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    saved = list(out.grad_fn.saved_tensors)
    wanted = [t for t in leaves if t.requires_grad]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        grads = torch.autograd.grad(out, wanted, upstream)
    names = [event.name for event in profile.events()]
    assert f"csad::{op}_backward" in names
    return list(grads), sum(name in GEMMS for name in names), saved


@pytest.mark.parametrize("op", SMALL_OPS)
def test_small_op_through_autograd_computes_only_the_gradient_that_is_required(op):
    both, both_gemms, _ = _small_op_grads(op, (True, True))
    for index in (0, 1):
        (got,), gemms, _ = _small_op_grads(op, (index == 0, index == 1))
        assert torch.equal(got, both[index])
        if op != "softmax_adjacency":  # one GEMM chain per gradient (softmax's backward has none)
            assert 0 < gemms < both_gemms and 2 * gemms == both_gemms


def test_softmax_adjacency_keeps_s_only_when_tau_requires_grad():
    *_, saved = _small_op_grads("softmax_adjacency", (True, False))
    assert saved[1] is None
    *_, saved = _small_op_grads("softmax_adjacency", (False, True))
    assert saved[1] is not None
