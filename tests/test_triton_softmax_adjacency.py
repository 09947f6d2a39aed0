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
