"""pytest-benchmark suite of `csad_kernels.cs_mutual_information`: every mode, size and provider (see conftest.py)."""

OP = "cs_mutual_information"


def test_cs_mutual_information(bench, case, provider):
    bench(case, provider)
