"""The CUDA backend (csrc/cuda/) against the float64 reference: every op and the fused estimator,
values and all gradients (DESIGN.md §2: relative error <= 1e-4 in float32).

These tests need a CUDA GPU and an extension built with its CUDA sources; they are skipped, with the
reason, everywhere else. STATUS: written before any GPU run of the CUDA backend; the first GPU run
of this file is the backend's first real test.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from _helpers import assert_matches, clustered, graph, labels, probabilities, rel_err

import csad_kernels as ck
import csad_kernels.cuda  # noqa: F401  (registers backend "cuda" when the extension has CUDA kernels)
import csad_kernels.reference as ref


def _skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "CUDA backend tests need a CUDA GPU; torch sees none"
    if "cuda" not in ck.available_backends():
        return f"the 'cuda' backend is not available: {ck.unavailable_reason('cuda')}"
    return None


SKIP = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))

DEVICE = "cuda"
TOL = 1e-4
NS = (2, 37, 64, 100, 130, 256, 1024)
DS = (1, 7, 32, 33)
BS = (1, 3)
OPTIONS = list(itertools.product(["joint", "content", "structural"], ["cs", "jsd"], ["mean", "sum"]))
OMEGAS = ("labels", "tolerance", "mask")
OPS = (
    "cosine_similarity",
    "cosine_similarity_backward",
    "softmax_adjacency",
    "softmax_adjacency_backward",
    "rwr",
    "rwr_backward",
    "symmetric_cross_entropy",
    "symmetric_cross_entropy_backward",
    "cross_sample_mi",
    "cross_sample_mi_backward",
    "cs_mutual_information_forward",
    "cs_mutual_information_backward",
)


@pytest.fixture(autouse=True)
def _ieee_float32_matmul():
    """cuBLAS GEMMs in full fp32 (no TF32), whatever the session's setting."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


# Every N with every d once; B, the options and the Ω source rotate with the case index.
SHAPES = [(BS[i % 2], n, d) for i, (n, d) in enumerate(itertools.product(NS, DS))]


def _ids(value):
    if isinstance(value, tuple):
        b, n, d = value
        return f"B{b}-N{n}-d{d}"
    return str(value)


def _grads(out, inputs, g):
    grads = torch.autograd.grad(out, inputs, g, allow_unused=True)
    return [torch.zeros_like(x) if grad is None else grad for x, grad in zip(inputs, grads, strict=True)]


def _compare(fn, inputs64, names, seed=0, device=DEVICE, absolute=()):
    """fn(*inputs, backend=...) in float32 on the CUDA backend vs the float64 reference.

    Checks the value and the gradient of every input with assert_matches (the float32 reference run
    on the same device is the "plain" comparison for values that are zero in exact arithmetic).
    Gradients named in ``absolute`` are zero in exact arithmetic (rows of d = 1 normalise to ±1): their
    error may reach 1e-4 absolute, or twice the plain reference's (round-off there grows with N).
    """
    x64 = [t.detach().to(device, torch.float64).requires_grad_() for t in inputs64]
    exact = fn(*x64, backend="reference")
    g = torch.randn(exact.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)
    exact_grads = _grads(exact, x64, g)
    results = {}
    for backend in ("cuda", "reference"):
        x32 = [t.detach().to(device, torch.float32).requires_grad_() for t in inputs64]
        out = fn(*x32, backend=backend)
        results[backend] = (out, _grads(out, x32, g.float()))
    got, got_grads = results["cuda"]
    plain, plain_grads = results["reference"]
    assert got.dtype == torch.float32 and got.shape == exact.shape and got.device.type == "cuda"
    assert_matches(got, exact, plain, tol=TOL, name="value")
    for name, *values in zip(names, got_grads, exact_grads, plain_grads, strict=True):
        if name in absolute:
            got_grad, exact_grad, plain_grad = values
            allowed = max(TOL * max(float(exact_grad.norm()), 1.0), 2 * float((plain_grad - exact_grad).norm()))
            assert float((got_grad - exact_grad).norm()) <= allowed, f"d{name}"
        else:
            assert_matches(*values, tol=TOL, name=f"d{name}")


def _pairs(batch, n, omega, device=DEVICE):
    if omega == "labels":
        return {"bias": labels(batch, n, classes=3, seed=n).to(device)}
    if omega == "tolerance":
        return {"bias": labels(batch, n, classes=5, k=3, seed=n).to(device), "tolerance": 1}
    return {"mask": ref.pair_mask(labels(batch, n, classes=3, seed=n).unsqueeze(-1), 0).to(device)}


def test_every_op_has_a_cuda_kernel():
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"csad::{op}", "CUDA"), op


# ---------------------------------------------------------------------------------------------
# single ops


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_cosine_similarity(shape):
    b, n, d = shape
    x, _ = clustered((b,), n, d, seed=n)
    y, _ = clustered((b,), max(2, n // 2 + 1), d, seed=n + 1)
    fn = lambda x, y, backend: ck.cosine_similarity(x, y, backend=backend)  # noqa: E731
    _compare(fn, [x, y], ["x", "y"], absolute=("x", "y") if d == 1 else ())


@pytest.mark.parametrize("shape", SHAPES[::2] + SHAPES[1::4], ids=_ids)
def test_softmax_adjacency(shape):
    b, n, d = shape
    x, _ = clustered((b,), n, d, seed=n)
    s = ref.cosine_similarity(x, x)
    tau = torch.tensor(7.0, dtype=torch.float64)
    _compare(lambda s, tau, backend: ck.softmax_adjacency(s, tau, backend=backend), [s, tau], ["s", "tau"])


@pytest.mark.parametrize("index,shape", list(enumerate(SHAPES[::2])), ids=_ids)
def test_rwr(index, shape):
    b, n, d = shape
    c = (0.5, 0.15, 0.85)[index % 3]
    e = graph((b,), n, d=max(d, 2), seed=n)
    _compare(lambda e, backend: ck.rwr(e, c, backend=backend), [e], ["e"])


@pytest.mark.parametrize("shape", SHAPES[::2] + SHAPES[1::4], ids=_ids)
def test_symmetric_cross_entropy(shape):
    b, n, k = shape
    p = probabilities((b,), n, k, seed=n)
    q = probabilities((b,), max(2, n // 2 + 1), k, seed=n + 1)
    _compare(lambda p, q, backend: ck.symmetric_cross_entropy(p, q, backend=backend), [p, q], ["p", "q"])


def test_symmetric_cross_entropy_zero_probabilities_use_the_float32_clamped_log():
    # log(max(p, smallest normal)) clamps at the compute dtype's smallest normal, so float32 results
    # follow the float32 reference here; the clamp also cuts the gradient of the clamped entries.
    p = probabilities((2,), 37, 7, seed=1).float().to(DEVICE)
    q = probabilities((2,), 20, 7, seed=2).float().to(DEVICE)
    p[:, 0, 1] = 0.0
    q[:, 3, 0] = 0.0
    outs, grads = [], []
    for backend in ("cuda", "reference"):
        pp, qq = p.clone().requires_grad_(), q.clone().requires_grad_()
        out = ck.symmetric_cross_entropy(pp, qq, backend=backend)
        outs.append(out)
        grads.append(torch.autograd.grad(out.sum(), (pp, qq)))
    assert rel_err(outs[0], outs[1]) <= 1e-6
    for got, want in zip(grads[0], grads[1], strict=True):
        assert torch.isfinite(got).all() and rel_err(got, want) <= TOL


@pytest.mark.parametrize("index,shape", list(enumerate(SHAPES[::2])), ids=_ids)
@pytest.mark.parametrize("estimator", ["cs", "jsd"])
def test_cross_sample_mi(index, shape, estimator):
    b, n, d = shape
    x, _ = clustered((b,), n, d, seed=n)
    y, _ = clustered((b,), n, d, seed=n + 3)
    m = 2.0 * ref.cosine_similarity(x, y)
    pairs = _pairs((b,), n, OMEGAS[index % 3])
    reduction = ("mean", "sum")[index % 2]

    def fn(m, backend):
        return ck.cross_sample_mi(m, **pairs, estimator=estimator, reduction=reduction, backend=backend)

    _compare(fn, [m], ["m"])


# ---------------------------------------------------------------------------------------------
# the fused estimator


def _estimator_fn(pairs, **kw):
    def fn(u, v, alpha, tau_y, tau_b, backend):
        return ck.cs_mutual_information(u, v, **pairs, alpha=alpha, tau_y=tau_y, tau_b=tau_b, backend=backend, **kw)

    return fn


def _scalars():
    return [torch.tensor(x, dtype=torch.float64) for x in (1.3, 8.0, 12.0)]


def _estimator_problem(batch, n, d, seed=0):
    u, _ = clustered(batch, n, d, seed=seed + n)
    v, _ = clustered(batch, n, d, seed=seed + n + 7)
    return u, v


@pytest.mark.parametrize("index,shape", list(enumerate(SHAPES)), ids=_ids)
def test_cs_mutual_information(index, shape):
    b, n, d = shape
    similarity, estimator, reduction = OPTIONS[index % len(OPTIONS)]
    u, v = _estimator_problem((b,), n, d)
    pairs = _pairs((b,), n, OMEGAS[index % 3])
    fn = _estimator_fn(pairs, similarity=similarity, estimator=estimator, reduction=reduction)
    names = ["u", "v", "alpha", "tau_y", "tau_b"]
    _compare(fn, [u, v, *_scalars()], names, absolute=("u", "v") if d == 1 else ())


@pytest.mark.parametrize("similarity,estimator,reduction", OPTIONS)
def test_cs_mutual_information_every_option(similarity, estimator, reduction):
    u, v = _estimator_problem((3,), 100, 33)
    fn = _estimator_fn(_pairs((3,), 100, "tolerance"), similarity=similarity, estimator=estimator, reduction=reduction)
    _compare(fn, [u, v, *_scalars()], ["u", "v", "alpha", "tau_y", "tau_b"])


@pytest.mark.parametrize("c", [0.15, 0.85])
def test_cs_mutual_information_other_restart_probabilities(c):
    u, v = _estimator_problem((2,), 37, 7)
    _compare(_estimator_fn(_pairs((2,), 37, "labels"), c=c), [u, v, *_scalars()], ["u", "v", "alpha", "tau_y", "tau_b"])


@pytest.mark.parametrize("estimator", ["cs", "jsd"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("empty", ["negative side (one bias value)", "positive side (all-false mask)"])
def test_empty_side_contributes_zero_with_finite_gradients(estimator, reduction, empty):
    u, v = _estimator_problem((2,), 33, 8)
    if empty.startswith("negative"):
        pairs = {"bias": torch.zeros(2, 33, dtype=torch.int64, device=DEVICE)}
    else:
        pairs = {"mask": torch.zeros(2, 33, 33, dtype=torch.bool, device=DEVICE)}
    fn = _estimator_fn(pairs, estimator=estimator, reduction=reduction)
    _compare(fn, [u, v, *_scalars()], ["u", "v", "alpha", "tau_y", "tau_b"])
    m = 2.0 * ref.cosine_similarity(u, v)
    _compare(
        lambda m, backend: ck.cross_sample_mi(m, **pairs, estimator=estimator, reduction=reduction, backend=backend),
        [m],
        ["m"],
    )


def test_float64_matches_reference_and_cpu_backend_closely():
    u, v = _estimator_problem((2,), 45, 9)
    bias = labels((2,), 45, classes=8, k=3, seed=0)
    scalars = _scalars()
    args = (bias, None, 1, *scalars, 0.5, "joint", "cs", "mean")
    gpu_value, gpu_state = torch.ops.csad.cs_mutual_information_forward(
        u.to(DEVICE), v.to(DEVICE), *(a.to(DEVICE) if isinstance(a, torch.Tensor) else a for a in args)
    )
    cpu_value, cpu_state = torch.ops.csad.cs_mutual_information_forward(u, v, *args)
    # Same value and state as the CPU backend (shapes, dtypes and values).
    for index, (got, want) in enumerate(zip([gpu_value, *gpu_state], [cpu_value, *cpu_state], strict=True)):
        assert got.shape == want.shape and got.dtype == want.dtype, index
        assert rel_err(got.cpu(), want, floor=1.0) <= 1e-10, index
    for similarity, estimator, reduction in OPTIONS:
        kw = dict(similarity=similarity, estimator=estimator, reduction=reduction)
        fn = _estimator_fn({"bias": bias.to(DEVICE), "tolerance": 1}, **kw)
        x_gpu = [t.to(DEVICE).requires_grad_() for t in (u, v, *scalars)]
        x_ref = [t.clone().requires_grad_() for t in (u, v, *scalars)]
        out = fn(*x_gpu, backend="cuda")
        expected = _estimator_fn({"bias": bias, "tolerance": 1}, **kw)(*x_ref, backend="reference")
        assert out.dtype == torch.float64
        assert rel_err(out.cpu(), expected) <= 1e-10
        got_grads = _grads(out, x_gpu, torch.ones_like(out))
        expected_grads = _grads(expected, x_ref, torch.ones_like(expected))
        for got, want in zip(got_grads, expected_grads, strict=True):
            assert rel_err(got.cpu(), want, floor=1.0) <= 1e-10


def test_large_scores_do_not_overflow():
    u, v = _estimator_problem((), 16, 7)
    pairs = _pairs((), 16, "labels")
    kw = dict(tau_y=10.0, tau_b=10.0, similarity="content")
    out = ck.cs_mutual_information(u.float().to(DEVICE), v.float().to(DEVICE), **pairs, alpha=1e4, **kw, backend="cuda")
    cpu_pairs = {k: x.cpu() if isinstance(x, torch.Tensor) else x for k, x in pairs.items()}
    expected = ck.cs_mutual_information(u, v, **cpu_pairs, alpha=1e4, **kw, backend="reference")
    assert torch.isfinite(out).all()
    assert rel_err(out.cpu(), expected) <= TOL


def test_non_contiguous_inputs_stride_zero_gradient_and_zero_rows():
    u, v = _estimator_problem((3,), 37, 7)
    u[1, 4] = 0.0  # a zero row: its norm is clamped
    pairs = _pairs((3,), 37, "labels")
    ut = u.to(DEVICE).transpose(0, 1).contiguous().transpose(0, 1).float().requires_grad_()
    vt = v.to(DEVICE).transpose(-1, -2).contiguous().transpose(-1, -2).float().requires_grad_()
    assert not ut.is_contiguous() and not vt.is_contiguous()
    kw = dict(alpha=1.3, tau_y=4.0, tau_b=6.0)
    ck.cs_mutual_information(ut, vt, **pairs, **kw, backend="cuda").sum().backward()  # stride-0 grad
    cpu_pairs = {k: x.cpu() for k, x in pairs.items()}
    ur, vr = u.clone().requires_grad_(), v.clone().requires_grad_()
    ck.cs_mutual_information(ur, vr, **cpu_pairs, **kw, backend="reference").sum().backward()
    assert rel_err(ut.grad.cpu(), ur.grad) <= TOL and rel_err(vt.grad.cpu(), vr.grad) <= TOL


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    u, v = _estimator_problem((2,), 40, 16)
    pairs = _pairs((2,), 40, "tolerance")
    ul, vl = u.to(DEVICE, dtype).requires_grad_(), v.to(DEVICE, dtype).requires_grad_()
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0)
    out = ck.cs_mutual_information(ul, vl, **pairs, **kw, backend="cuda")
    assert out.dtype == dtype
    gu, gv = torch.autograd.grad(out.sum(), (ul, vl))
    assert gu.dtype == dtype and gv.dtype == dtype
    expected = ck.cs_mutual_information(ul.float(), vl.float(), **pairs, **kw, backend="cuda")
    torch.testing.assert_close(out, expected.to(dtype))


def test_runs_on_the_current_stream():
    """Kernels are queued on the current stream (not the default one): results read back correctly."""
    u, v = _estimator_problem((2,), 64, 32)
    pairs = _pairs((2,), 64, "labels")
    u32, v32 = u.float().to(DEVICE), v.float().to(DEVICE)
    kw = dict(alpha=1.3, tau_y=4.0, tau_b=6.0)
    expected = ck.cs_mutual_information(u32, v32, **pairs, **kw, backend="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = ck.cs_mutual_information(u32, v32, **pairs, **kw, backend="cuda")
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------------------------------------
# torch.library contracts


def test_opcheck_single_ops():
    x, _ = clustered((2,), 9, 4, dtype=torch.float32)
    y, _ = clustered((2,), 7, 4, dtype=torch.float32, seed=1)
    x, y = x.to(DEVICE), y.to(DEVICE)
    torch.library.opcheck(torch.ops.csad.cosine_similarity.default, (x.requires_grad_(), y.requires_grad_()))
    s = torch.randn(2, 9, 9, device=DEVICE)
    tau = torch.tensor(3.0, device=DEVICE)
    torch.library.opcheck(torch.ops.csad.softmax_adjacency.default, (s.requires_grad_(), tau.requires_grad_()))
    e = graph((2,), 9).float().to(DEVICE)
    torch.library.opcheck(torch.ops.csad.rwr.default, (e.requires_grad_(), 0.5))
    p = probabilities((2,), 9, 5, dtype=torch.float32).to(DEVICE)
    q = probabilities((2,), 7, 5, seed=1, dtype=torch.float32).to(DEVICE)
    torch.library.opcheck(torch.ops.csad.symmetric_cross_entropy.default, (p.requires_grad_(), q.requires_grad_()))
    bias = labels((2,), 9, classes=3, k=3).to(DEVICE)
    for estimator, reduction in itertools.product(["cs", "jsd"], ["mean", "sum"]):
        m = torch.randn(2, 9, 9, device=DEVICE, requires_grad=True)
        torch.library.opcheck(torch.ops.csad.cross_sample_mi.default, (m, bias, None, 1, estimator, reduction))
        mask = ref.pair_mask(bias, 1)
        torch.library.opcheck(torch.ops.csad.cross_sample_mi.default, (m, None, mask, 0, estimator, reduction))


def test_opcheck_fused_estimator():
    u, v = _estimator_problem((2,), 9, 4)
    bias = labels((2,), 9, classes=3, k=3).to(DEVICE)
    for similarity in ("joint", "content", "structural"):
        args = (
            u.float().to(DEVICE).requires_grad_(),
            v.float().to(DEVICE).requires_grad_(),
            bias,
            None,
            1,
            torch.tensor(1.0, device=DEVICE, requires_grad=True),
            torch.tensor(10.0, device=DEVICE, requires_grad=True),
            torch.tensor(10.0, device=DEVICE, requires_grad=True),
            0.5,
            similarity,
            "cs",
            "mean",
        )
        torch.library.opcheck(torch.ops.csad.cs_mutual_information_forward.default, args)


def test_compiles_with_fullgraph():
    pytest.importorskip("triton")  # inductor's GPU code generation
    u, v = _estimator_problem((2,), 24, 8)
    pairs = _pairs((2,), 24, "tolerance")
    u32 = u.float().to(DEVICE).requires_grad_()
    kw = dict(alpha=1.0, tau_y=10.0, tau_b=10.0, backend="cuda")
    compiled = torch.compile(lambda a, b: ck.cs_mutual_information(a, b, **pairs, **kw), fullgraph=True)
    value = compiled(u32, v.float().to(DEVICE))
    (grad,) = torch.autograd.grad(value.sum(), u32)
    u_ref = u.clone().requires_grad_()
    cpu_pairs = {k: x.cpu() if isinstance(x, torch.Tensor) else x for k, x in pairs.items()}
    expected = ck.cs_mutual_information(u_ref, v, **cpu_pairs, **{**kw, "backend": "reference"})
    (expected_grad,) = torch.autograd.grad(expected.sum(), u_ref)
    assert rel_err(value.cpu(), expected) <= TOL
    assert rel_err(grad.cpu(), expected_grad) <= TOL


@pytest.mark.parametrize("setting", ["high", "medium", "fp32_precision=tf32"])
def test_gemms_stay_float32_when_the_session_allows_tf32(setting):
    """The backend's cuBLAS GEMMs ignore the session's TF32 setting (TF32 gives ~1e-3), through the legacy
    interface (torch.set_float32_matmul_precision) or the per-backend one, and restore it."""
    e = graph((2,), 256, 16)
    x, y = torch.randn(2, 2, 256, 64, dtype=torch.float64)
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision
    if setting.startswith("fp32_precision="):
        matmul.fp32_precision = setting.split("=")[1]
    else:
        torch.set_float32_matmul_precision(setting)
    try:
        got_r = ck.rwr(e.float().to(DEVICE), 0.5, backend="cuda")
        got_s = ck.cosine_similarity(x.float().to(DEVICE), y.float().to(DEVICE), backend="cuda")
        if setting.startswith("fp32_precision="):
            assert matmul.fp32_precision == "tf32"
        else:
            assert torch.get_float32_matmul_precision() == setting
    finally:
        matmul.fp32_precision = previous
    assert rel_err(got_r.cpu(), ref.rwr(e, 0.5)) <= TOL
    assert rel_err(got_s.cpu(), ref.cosine_similarity(x, y)) <= TOL
