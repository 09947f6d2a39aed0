"""The four small C++ ops (csrc/<op>.cpp) on the CPU leave their inputs as they were.

Their softmax and RWR steps (the per-device Primitives) may overwrite the tensor they are handed, so
each op hands them a copy of its own; where the batched input is a view of the caller's tensor
(contiguous, already float32/float64) a missed copy would overwrite the caller's tensor. Checked here by
value for every forward and backward op, and by ``torch.library.opcheck`` (whose schema check flags a
mutated input) for the backward ops, which the per-op tests opcheck only through autograd.
"""

from __future__ import annotations

import pytest
import torch
from _helpers import clustered, graph, probabilities

import csad_kernels  # noqa: F401  (loads the extension and registers the fake kernels)
import csad_kernels.reference as ref

pytestmark = pytest.mark.skipif(
    not hasattr(torch.ops.csad, "rwr_backward"), reason="the C++ extension (csad_kernels._C) is not built"
)

DTYPES = [torch.float32, torch.float64]


def _calls(dtype: torch.dtype) -> list[tuple[object, tuple]]:
    """(op, arguments) for each forward and backward op, with contiguous inputs in dtype."""
    x, _ = clustered((2,), 9, 4, dtype=dtype)
    y, _ = clustered((2,), 7, 4, dtype=dtype, seed=1)
    s = ref.cosine_similarity(x, x)
    tau = torch.tensor(3.0, dtype=dtype)
    e = graph((2,), 9, dtype=dtype)
    r, w_row_sums = torch.ops.csad.rwr(e, 0.5)
    p = probabilities((2,), 9, 5, dtype=dtype)
    q = probabilities((2,), 7, 5, seed=1, dtype=dtype)
    g = torch.Generator().manual_seed(2)

    def grad(like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=g, dtype=torch.float64).to(dtype)

    ops = torch.ops.csad
    both = [True, True]
    return [
        (ops.cosine_similarity.default, (x, y)),
        (ops.cosine_similarity_backward.default, (grad(x @ y.mT), x, y, both)),
        (ops.softmax_adjacency.default, (s, tau)),
        (ops.softmax_adjacency_backward.default, (grad(s), ref.softmax_adjacency(s, 3.0), s, tau, both)),
        (ops.softmax_adjacency_backward.default, (grad(s), ref.softmax_adjacency(s, 3.0), None, tau, [True, False])),
        (ops.rwr.default, (e, 0.5)),
        (ops.rwr_backward.default, (grad(r), r, w_row_sums, 0.5)),
        (ops.symmetric_cross_entropy.default, (p, q)),
        (ops.symmetric_cross_entropy_backward.default, (grad(p @ q.mT), p, q, both)),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_backward_ops_leave_their_inputs_unchanged(dtype):
    for op, args in _calls(dtype):
        before = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        op(*args)
        for index, (after, kept) in enumerate(zip(args, before, strict=True)):
            if isinstance(after, torch.Tensor):
                assert torch.equal(after, kept), f"{op} changed its argument {index}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_backward_ops(dtype):
    for op, args in _calls(dtype):
        if "backward" in str(op):
            torch.library.opcheck(op, args)
