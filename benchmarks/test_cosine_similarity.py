"""pytest-benchmark suite of `csad_kernels.cosine_similarity`: every mode, size and provider (see conftest.py)."""

OP = "cosine_similarity"


def test_cosine_similarity(bench, case, provider):
    bench(case, provider)
