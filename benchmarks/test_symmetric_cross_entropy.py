"""pytest-benchmark suite of `csad_kernels.symmetric_cross_entropy`: every mode, size and provider (see conftest.py)."""

OP = "symmetric_cross_entropy"


def test_symmetric_cross_entropy(bench, case, provider):
    bench(case, provider)
