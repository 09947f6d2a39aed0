import pytest
import torch
from _helpers import clustered
from _triton_ops import SKIP, check_op

import csad_kernels.reference as ref
import csad_kernels.triton.softmax_adjacency as tsm

pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))


@pytest.mark.parametrize("batch,n", [((), 2), ((3,), 37), ((), 130), ((2,), 256)])
def test_matches_float64_reference(batch, n):
    x, _ = clustered(batch, n, 5, seed=n)
    s = ref.cosine_similarity(x, x)
    check_op("softmax_adjacency", [s, torch.tensor(7.0, dtype=torch.float64)])


def test_opcheck():
    s = torch.randn(2, 9, 9)
    torch.library.opcheck(tsm.softmax_adjacency_op, (s.requires_grad_(), torch.tensor(3.0, requires_grad=True)))


@pytest.mark.parametrize("batch,n,d", [((), 2, 1), ((3,), 37, 7), ((), 130, 33), ((2,), 256, 32)])
def test_gram_softmax_matches_float64_reference(batch, n, d):
    # the estimator's tiled regime: E = softmax_rows(tau · xn xnᵀ) fused, the rows normalised in the kernels
    _check_gram_softmax(batch, n, d, seed=n)


def _check_gram_softmax(batch, n, d, seed):
    """gram_softmax's value and both gradients (x, tau) against the float64 reference, relative error <= 1e-4."""
    from _helpers import rel_err

    x, _ = clustered(batch, n, d, seed=seed)
    x64, tau64 = x.clone().requires_grad_(), torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    expected = ref.softmax_adjacency(ref.cosine_similarity(x64, x64), tau64)
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    eg = torch.autograd.grad(expected, (x64, tau64), g)
    x32, tau32 = x.float().requires_grad_(), torch.tensor(7.0, requires_grad=True)
    out = tsm.gram_softmax(x32, tau32)
    og = torch.autograd.grad(out, (x32, tau32), g.float())
    assert rel_err(out, expected) <= 1e-4
    for name, got, want in zip(("x", "tau"), og, eg, strict=True):
        floor = 1.0 if name == "x" and d == 1 else 1e-300  # d = 1: dx is 0 mathematically
        assert rel_err(got, want, floor=floor) <= 1e-4, name


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
