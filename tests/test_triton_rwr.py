import pytest
import torch
from _helpers import graph
from _triton_ops import SKIP, check_op

import csad_kernels.triton.rwr as trwr

pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))


@pytest.mark.parametrize(
    "batch,n,c", [((), 2, 0.5), ((3,), 37, 0.5), ((), 130, 0.85), ((2,), 256, 0.5), ((), 64, 0.15)]
)
def test_matches_float64_reference(batch, n, c):
    check_op("rwr", [graph(batch, n, seed=n)], extra=(c,))


def test_factor_count_follows_the_error_bound():
    assert trwr.num_factors(0.5) == 5
    for c in (0.15, 0.5, 0.85, 0.99):
        k = trwr.num_factors(c)
        assert c ** (2**k) / (1 - c) <= 1e-8 < c ** (2 ** (k - 1)) / (1 - c)


def test_opcheck():
    e = graph((2,), 9).float()
    torch.library.opcheck(trwr.rwr_op, (e.requires_grad_(), 0.5))
