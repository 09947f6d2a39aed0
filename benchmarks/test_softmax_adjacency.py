"""pytest-benchmark suite of `csad_kernels.softmax_adjacency`: every mode, size and provider (see conftest.py)."""

OP = "softmax_adjacency"


def test_softmax_adjacency(bench, case, provider):
    bench(case, provider)
