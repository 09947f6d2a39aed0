"""pytest-benchmark front end of the harness: ``python -m pytest benchmarks/test_rwr.py --benchmark-group-by=group``.

Options: ``--bench-grid {smoke,cpu,full}`` (default: ``full`` with a GPU, else ``cpu``), ``--bench-budget S``,
``--bench-device {auto,cpu,cuda}``. Tests are parametrized by case (one group per workload: op, mode, similarity,
d, B; the id ends in ``-N<n>``) and provider.

pytest-benchmark stores, groups, compares and saves the results; the measurement itself is the harness's
(providers interleaved round by round, CUDA events on a GPU; see harness.py). The first test of a shape measures
every provider and mode of it at once; each test then replays its provider's samples into pytest-benchmark through
a clock that only the replay moves, so pytest-benchmark's statistics are exactly those samples. A provider that
cannot run here is skipped with the library's reason; a provider that fails or disagrees with eager fails.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from benchmarks import harness, workloads


class ReplayClock:
    """A clock that moves only by ``advance``: read around ``advance(t)``, it measures exactly ``t``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CLOCK = ReplayClock()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("csad benchmarks")
    group.addoption("--bench-grid", choices=("smoke", "cpu", "full"), help="sizes (default: full on a GPU, else cpu)")
    group.addoption("--bench-budget", type=float, default=2.0, help="seconds of timed rounds per case")
    group.addoption("--bench-device", choices=("auto", "cpu", "cuda"), default="auto")


def _grid(config: pytest.Config) -> list[workloads.Case]:
    device = harness.pick_device(config.getoption("--bench-device"))
    profile = config.getoption("--bench-grid") or ("full" if device.type == "cuda" else "cpu")
    return workloads.grid(profile)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"case", "provider"} <= set(metafunc.fixturenames):
        cases = [c for c in _grid(metafunc.config) if c.op == metafunc.module.OP]
        params = [(c, p) for c in cases for p in harness.PROVIDERS]
        metafunc.parametrize(("case", "provider"), params, ids=[f"{c.id}-{p}" for c, p in params])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.benchmark(timer=CLOCK, warmup=False, disable_gc=False))


@pytest.fixture(scope="session")
def measured(pytestconfig: pytest.Config) -> Callable[[workloads.Case], dict[tuple, harness.Row]]:
    """Rows of a case's shape, measured on first request; only the last shape is kept."""
    device = harness.pick_device(pytestconfig.getoption("--bench-device"))
    profile = pytestconfig.getoption("--bench-grid")
    settings = (
        harness.SMOKE if profile == "smoke" else harness.Settings(budget_s=pytestconfig.getoption("--bench-budget"))
    )
    grid = _grid(pytestconfig)
    cache: dict[tuple, dict[tuple, harness.Row]] = {}

    def get(case: workloads.Case) -> dict[tuple, harness.Row]:
        if case.shape not in cache:
            cache.clear()
            rows = harness.measure([c for c in grid if c.shape == case.shape], settings, device)
            cache[case.shape] = {(r.case, r.provider): r for r in rows}
        return cache[case.shape]

    return get


@pytest.fixture
def bench(benchmark, measured) -> Callable[[workloads.Case, str], None]:
    """Records one provider's samples of a case in pytest-benchmark, with FLOPs, GFLOP/s and peak memory."""

    def record(case: workloads.Case, provider: str) -> None:
        row = measured(case).get((case, provider))
        if row is None or row.status == "skipped":
            pytest.skip(row.reason if row else f"{provider} was not measured")
        if row.status == "error":
            pytest.fail(f"{provider}: {row.reason}")
        benchmark.group = case.workload
        benchmark.extra_info.update(
            flops=case.flops, gflops=row.gflops, peak_bytes=row.peak_bytes, rel_err=row.rel_err, n=case.n
        )
        samples = iter(row.samples_s)
        benchmark.pedantic(CLOCK.advance, setup=lambda: ((next(samples),), {}), rounds=len(row.samples_s))

    return record
