"""pytest-benchmark suite of `csad_kernels.rwr`: every mode, size and provider (see conftest.py)."""

OP = "rwr"


def test_rwr(bench, case, provider):
    bench(case, provider)
