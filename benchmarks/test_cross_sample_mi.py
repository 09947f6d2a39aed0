"""pytest-benchmark suite of `csad_kernels.cross_sample_mi`: every mode, size and provider (see conftest.py)."""

OP = "cross_sample_mi"


def test_cross_sample_mi(bench, case, provider):
    bench(case, provider)
