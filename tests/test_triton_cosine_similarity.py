import pytest
import torch
from _helpers import clustered
from _triton_ops import SKIP, check_op

import csad_kernels.triton.cosine_similarity as tcos

pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))


@pytest.mark.parametrize("batch,n,m,d", [((), 2, 2, 1), ((), 37, 100, 7), ((3,), 64, 64, 32), ((1,), 256, 130, 33)])
def test_matches_float64_reference(batch, n, m, d):
    x, _ = clustered(batch, n, d, seed=1)
    y, _ = clustered(batch, m, d, seed=2)
    check_op("cosine_similarity", [x, y], floor=1.0 if d == 1 else 1e-300)


def test_non_contiguous_and_stride_zero_gradient():
    x, _ = clustered((3,), 20, 9, seed=1)
    xt = x.transpose(0, 1).contiguous().transpose(0, 1).float().requires_grad_()
    tcos.cosine_similarity(xt, xt[:, ::2]).sum().backward()
    xr = x.clone().requires_grad_()
    from _helpers import rel_err

    import csad_kernels.reference as ref

    ref.cosine_similarity(xr, xr[:, ::2]).sum().backward()
    assert rel_err(xt.grad, xr.grad) <= 1e-4


def test_opcheck_and_compile():
    x, y = torch.randn(2, 8, 5), torch.randn(2, 6, 5)
    torch.library.opcheck(tcos.cosine_similarity_op, (x.requires_grad_(), y.requires_grad_()))
    out = torch.compile(lambda a, b: tcos.cosine_similarity(a, b).sum(), fullgraph=True)(x, y)
    torch.testing.assert_close(out, tcos.cosine_similarity(x, y).sum())
