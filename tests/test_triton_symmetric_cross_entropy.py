import pytest
import torch
from _helpers import probabilities
from _triton_ops import SKIP, check_op

import csad_kernels.triton.symmetric_cross_entropy as tsce

pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))


@pytest.mark.parametrize("batch,n,m,k", [((), 2, 3, 2), ((3,), 37, 20, 7), ((), 130, 100, 130), ((1,), 256, 256, 256)])
def test_matches_float64_reference(batch, n, m, k):
    check_op("symmetric_cross_entropy", [probabilities(batch, n, k, seed=1), probabilities(batch, m, k, seed=2)])


def test_zero_probabilities_use_the_float32_clamped_log():
    # safe_log clamps to the tiny of the compute dtype: float32 here, so the float32 reference is the target
    from _helpers import rel_err

    import csad_kernels as ck
    import csad_kernels.reference as ref

    p = probabilities((), 6, 5, seed=1).float()
    p[0, 1] = 0.0
    q = probabilities((), 4, 5, seed=2).float().requires_grad_()
    out = ck.symmetric_cross_entropy(p, q, backend="triton")
    assert rel_err(out, ref.symmetric_cross_entropy(p, q)) <= 1e-6
    (gq,) = torch.autograd.grad(out.sum(), q)
    (eq,) = torch.autograd.grad(ref.symmetric_cross_entropy(p, q).sum(), q)
    assert torch.isfinite(gq).all() and rel_err(gq, eq) <= 1e-4


def test_opcheck():
    p, q = torch.rand(2, 7, 5), torch.rand(2, 6, 5)
    torch.library.opcheck(tsce.symmetric_cross_entropy_op, (p.requires_grad_(), q.requires_grad_()))
