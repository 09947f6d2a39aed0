"""Double backward (issue 15): the reference's second derivatives are right (gradgradcheck); every fused
backend's public op raises a clear error when a gradient is differentiated again, while a first-order
``create_graph=True`` gradient still equals the plain one."""

import pytest
import torch
from _helpers import clustered, graph, labels, probabilities

import csad_kernels as ck
from csad_kernels import _dispatch

N = 8


def _inputs():
    """Public op name -> (float64 tensor inputs, keyword arguments)."""
    x, _ = clustered((), N, 4, seed=0)
    y, _ = clustered((), N, 4, seed=1)
    return {
        "cosine_similarity": ([x, y], {}),
        "softmax_adjacency": ([ck.cosine_similarity(x, x), torch.tensor(5.0, dtype=torch.float64)], {}),
        "rwr": ([graph((), N)], {}),
        "symmetric_cross_entropy": (
            [probabilities((), N, 5, seed=0, peak=1.0), probabilities((), N, 5, seed=1, peak=1.0)],
            {},
        ),
        "cross_sample_mi": ([0.5 * torch.randn(N, N, dtype=torch.float64)], {"bias": labels((), N)}),
        "cs_mutual_information": (
            [x, y, torch.tensor(1.3, dtype=torch.float64), torch.tensor(8.0, dtype=torch.float64)],
            {"bias": labels((), N)},
        ),
    }


def _call(op, tensors, kwargs, backend):
    fn = getattr(ck, op)
    if op == "cs_mutual_information":
        u, v, alpha, tau_y = tensors
        return fn(u, v, alpha=alpha, tau_y=tau_y, tau_b=10.0, backend=backend, **kwargs)
    return fn(*tensors, backend=backend, **kwargs)


def _leaves(tensors, dtype):
    return [t.detach().to(dtype).requires_grad_() for t in tensors]


OPS = list(_inputs())


def test_every_public_op_has_second_derivative_inputs():
    assert tuple(OPS) == _dispatch.OPS


@pytest.mark.parametrize("op", OPS)
def test_reference_second_derivatives(op):
    tensors, kwargs = _inputs()[op]
    leaves = _leaves(tensors, torch.float64)
    assert torch.autograd.gradgradcheck(lambda *t: _call(op, list(t), kwargs, "reference"), leaves)


FUSED = [b for b in ("cpu", "triton") if ck.unavailable_reason(b) is None]


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("op", OPS)
def test_fused_double_backward_raises_clearly(op, backend):
    dtype = torch.float64 if backend == "cpu" else torch.float32
    tensors, kwargs = _inputs()[op]
    leaves = _leaves(tensors, dtype)
    out = _call(op, leaves, kwargs, backend)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    plain = torch.autograd.grad((out * weights).sum(), leaves, retain_graph=True)
    first = torch.autograd.grad((out * weights).sum(), leaves, create_graph=True)
    for got, want in zip(first, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=f"double backward .* not supported by the '{backend}' backend.*reference"):
        torch.autograd.grad(sum(g.square().sum() for g in first), leaves)


def test_first_order_only_keeps_unused_inputs_without_gradient():
    """An input the fused kernel does not use (tau_y/tau_b with similarity="content") gets no gradient (None),
    as with the reference, with and without ``create_graph``; the used one still raises on double backward."""
    from csad_kernels._dispatch import first_order_only

    guarded = first_order_only(lambda x, unused: 2.0 * x, "op", "fake")
    for create_graph in (False, True):
        x, unused = torch.ones(3, requires_grad=True), torch.ones((), requires_grad=True)
        out = guarded(x, unused).sum()
        gx, gu = torch.autograd.grad(out, [x, unused], allow_unused=True, create_graph=create_graph)
        assert gu is None
        torch.testing.assert_close(gx, torch.full((3,), 2.0))
    with pytest.raises(RuntimeError, match="double backward .* not supported by the 'fake' backend"):
        torch.autograd.grad(gx.sum(), [x])


@pytest.mark.parametrize("backend", FUSED)
def test_content_similarity_gives_the_temperatures_no_gradient_on_every_backend(backend):
    """With similarity="content" the graphs are not built: tau_y and tau_b get None, as from the reference."""
    dtype = torch.float64 if backend == "cpu" else torch.float32
    gen = torch.Generator().manual_seed(3)
    u, v = (torch.randn(12, 4, generator=gen, dtype=dtype, requires_grad=True) for _ in range(2))
    scalars = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in (1.0, 5.0, 7.0)]
    bias = torch.randint(0, 3, (12,), generator=gen)
    for estimator in ("cs", "ms"):
        out = ck.cs_mutual_information(u, v, bias, alpha=scalars[0], tau_y=scalars[1], tau_b=scalars[2],
                                       similarity="content", estimator=estimator, backend=backend)
        grads = torch.autograd.grad(out, [u, v, *scalars], allow_unused=True)
        assert grads[3] is None and grads[4] is None, estimator
        assert all(g is not None for g in grads[:3]), estimator
