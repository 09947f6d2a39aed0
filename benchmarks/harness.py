"""How it is measured: providers, timing with providers interleaved, peak memory, the machine's description.

Providers: ``eager`` (the public API with ``backend="reference"``), ``compile`` (``torch.compile`` of the reference
math, ``dynamic=False, fullgraph=True``, compiled once per shape outside the timed region), then every backend in
``csad_kernels.BACKENDS`` but ``reference``. A backend that cannot run here, or has no kernel for an op, is skipped
with the reason the library gives, so new backends and kernels are picked up with no change here.

Timing: every provider is warmed up (compilation, allocator) and its forward checked against eager's on the same
inputs; then rounds run until a time budget is spent, each round timing every provider once in an order rotated by
the round, so a drift of a shared machine's load hits all providers alike. Each call takes the next of several input
sets (rotated so a repeat does not find its inputs in cache; on a GPU the L2 is also flushed before each call).
GPU calls are timed with CUDA events after a synchronisation; CPU calls with ``perf_counter``. Inputs are random
normal, never zeros, and grads are set to None before each call, so no call accumulates into the previous one.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import csad_kernels as ck
from benchmarks.workloads import OPS, Case, Fn

PROVIDERS = ("eager", "compile", *(b for b in ck.BACKENDS if b != "reference"))
ROOT = Path(__file__).resolve().parent.parent
CPU_ROTATE_BYTES = 64 << 20  # input sets rotated per call cover at least this (CPU L3 scale), 2 to 8 sets

torch._dynamo.config.recompile_limit = 10_000  # one compile per shape, many shapes: never fall back to eager
torch._dynamo.config.accumulated_recompile_limit = 100_000
torch._dynamo.config.fail_on_recompile_limit_hit = True


@dataclass(frozen=True)
class Settings:
    """When a case stops: after ``max_rounds``, or after ``min_rounds`` once ``budget_s`` of wall time is spent,
    or after ``cap_s`` whatever the round count (one round at least), so no row runs forever."""

    budget_s: float = 2.0
    min_rounds: int = 5
    max_rounds: int = 100
    cap_s: float = 60.0
    warmup: int = 2
    check_rtol: float = 1e-3  # forward output against eager's, ‖out − ref‖ / ‖ref‖
    quiet_wait_s: float = 10.0  # before a case, wait up to this long for other processes to leave the CPUs alone


SMOKE = Settings(budget_s=0.0, min_rounds=1, max_rounds=1, cap_s=0.0, warmup=1, quiet_wait_s=0.0)
CONTENDED = 0.1  # a case is marked contended when other processes used more than this share of all CPUs


@dataclass
class Row:
    case: Case
    provider: str
    status: str  # "ok", "skipped" (cannot run here: reason says why) or "error" (ran and failed or mismatched)
    reason: str = ""
    samples_s: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    rel_err: float | None = None
    foreign_cpu: float | None = None  # share of all CPUs that other processes used while the case was timed

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.samples_s) if self.samples_s else None

    @property
    def gflops(self) -> float | None:
        return self.case.flops / self.median_s / 1e9 if self.samples_s else None

    def to_json(self) -> dict:
        return {
            **asdict(self.case),
            "workload": self.case.workload,
            "provider": self.provider,
            "status": self.status,
            "reason": self.reason,
            "median_s": self.median_s,
            "rounds": len(self.samples_s),
            "flops": self.case.flops,
            "gflops": self.gflops,
            "peak_bytes": self.peak_bytes,
            "rel_err": self.rel_err,
            "foreign_cpu": self.foreign_cpu,
            "quartiles_s": quartiles(self.samples_s),
        }


def quartiles(samples: Sequence[float]) -> list[float]:
    """[min, 25%, median, 75%, max] of the samples (the spread behind a median), or [] without samples."""
    if not samples:
        return []
    middle = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else [samples[0]] * 3
    return [min(samples), *middle, max(samples)]


# ---- timing --------------------------------------------------------------------------------------------------------


class Timer:
    """Times one call: CUDA events around it after a synchronisation and an L2 flush, or perf_counter on a CPU."""

    _flush: dict[torch.device, torch.Tensor] = {}

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda and device not in self._flush:
            l2 = torch.cuda.get_device_properties(device).L2_cache_size
            self._flush[device] = torch.empty(max(2 * l2, 64 << 20), dtype=torch.int8, device=device)
        self.flush = self._flush.get(device)

    def __call__(self, region: Callable[[], object]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.flush.zero_()
            torch.cuda.synchronize()
            start.record()
            result = region()
            end.record()
            end.synchronize()
            del result
            return start.elapsed_time(end) / 1e3
        start_s = time.perf_counter()
        result = region()  # kept until the clock is read: freeing the autograd graph is not part of the call
        elapsed = time.perf_counter() - start_s
        del result
        return elapsed


def interleave(calls: dict[str, Callable[[], float]], settings: Settings) -> dict[str, list[float]]:
    """Rounds of one timed call per provider, in an order rotated by the round, until ``settings`` say stop."""
    names, samples = list(calls), {name: [] for name in calls}
    start, rounds = time.perf_counter(), 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while names:
            shift = rounds % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(calls[name]())
            rounds += 1
            elapsed = time.perf_counter() - start
            if rounds >= settings.max_rounds or elapsed >= settings.cap_s:
                break
            if rounds >= settings.min_rounds and elapsed >= settings.budget_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def _jiffies() -> tuple[int, int, int] | None:
    """CPU time from /proc: (all CPUs' total, all CPUs' busy, this process's own); None where there is no /proc."""
    try:
        cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = [int(v) for v in Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
    except (OSError, ValueError):
        return None
    return sum(cpu), sum(cpu) - cpu[3] - cpu[4], sum(own)


class Contention:
    """The share of all CPUs' time that other processes used since construction (a shared machine's noise)."""

    def __init__(self) -> None:
        self.start = _jiffies()

    def share(self) -> float | None:
        end = _jiffies()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        total, busy, own = (e - s for e, s in zip(end, self.start, strict=True))
        return max(0.0, (busy - own) / total)


def wait_for_quiet(max_wait_s: float) -> None:
    """Waits, up to ``max_wait_s``, until other processes use less than CONTENDED of the CPUs over half a second."""
    deadline = time.perf_counter() + max_wait_s
    while time.perf_counter() < deadline:
        probe = Contention()
        time.sleep(0.5)
        share = probe.share()
        if share is None or share < CONTENDED:
            return


def prepare(mode: str, fn: Fn, args: Sequence[torch.Tensor], grad: torch.Tensor) -> Callable[[], object]:
    """The region to time: the forward, the backward (its forward runs here, untimed) or both."""
    for t in args:
        t.grad = None
    if mode == "fwd":
        return lambda: fn(*args)
    if mode == "fwdbwd":
        return lambda: torch.autograd.backward(fn(*args), grad)
    out = fn(*args)
    return lambda: torch.autograd.backward(out, grad)


# ---- memory --------------------------------------------------------------------------------------------------------

MEMORY_NOTE = {
    "cuda": "peak of torch.cuda.max_memory_allocated during the timed region, above what was allocated before it",
    "cpu": (
        "peak of the bytes live in torch's CPU allocator during the timed region, summed from the profiler's "
        "allocation events (profile_memory=True); excludes BLAS/LAPACK-internal workspace and Python objects"
    ),
}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences the C++ profiler's start/stop log lines on file descriptor 2 (Python errors still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(region: Callable[[], object], device: torch.device) -> int | None:
    """Extra bytes the region holds at its peak (see MEMORY_NOTE); None if the profiler cannot tell."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = region()
        torch.cuda.synchronize()
        del result
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = region()
    del result
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:  # the profiler's raw results moved: no number rather than a wrong one
        return None
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


# ---- providers and one shape ---------------------------------------------------------------------------------------

_COMPILED: dict[Fn, Fn] = {}


def build(provider: str, case: Case, device: torch.device) -> tuple[Fn | None, str]:
    """The provider's function for the case, or None and why it cannot run here."""
    op = OPS[case.op]
    if provider == "eager":
        return op.api(case, "reference"), ""
    if provider == "compile":
        math_fn = op.math(case)
        if math_fn not in _COMPILED:
            _COMPILED[math_fn] = torch.compile(math_fn, dynamic=False, fullgraph=True)
        return _COMPILED[math_fn], ""
    reason = ck.unavailable_reason(provider)
    if reason is None and provider == "triton" and device.type != "cuda":
        reason = "TRITON_INTERPRET=1 runs Triton in its CPU interpreter: its times are not kernel times"
    return (None, reason) if reason else (op.api(case, provider), "")


@dataclass
class _Inputs:
    args: tuple[torch.Tensor, ...]
    grad: torch.Tensor | None = None  # the output gradient, random normal like the inputs


def input_sets(case: Case, device: torch.device) -> list[_Inputs]:
    """Enough input sets to cover the cache when rotated (2 to 8); floating inputs are leaves that require grad."""
    sets: list[_Inputs] = []
    with torch.no_grad():
        while True:
            gen = torch.Generator(device=device).manual_seed(len(sets))
            args = tuple(
                t.requires_grad_() if t.is_floating_point() else t for t in OPS[case.op].inputs(case, gen, device)
            )
            sets.append(_Inputs(args))
            size = sum(t.numel() * t.element_size() for t in args) * len(sets)
            target = (
                2 * torch.cuda.get_device_properties(device).L2_cache_size
                if device.type == "cuda"
                else CPU_ROTATE_BYTES
            )
            if len(sets) >= 8 or (len(sets) >= 2 and size >= target):
                return sets


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``("skipped", why)`` for a backend that has no kernel for this, else ``("error", the exception)``."""
    if isinstance(exc, ck.BackendUnavailableError):
        return "skipped", str(exc)
    return "error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def measure(
    cases: Sequence[Case], settings: Settings, device: torch.device, providers: Sequence[str] = PROVIDERS
) -> list[Row]:
    """Every provider on the cases of one shape (they differ in mode only): inputs, builds and checks are shared."""
    if len({c.shape for c in cases}) != 1:
        raise ValueError("measure() takes the modes of one shape")
    sets = input_sets(cases[0], device)
    fns: dict[str, Fn] = {}
    status: dict[str, tuple[str, str]] = {}
    rel_err: dict[str, float] = {}
    expected = None
    for provider in providers:
        fn, reason = build(provider, cases[0], device)
        if fn is None:
            status[provider] = ("skipped", reason)
            continue
        try:
            out = fn(*sets[0].args).detach()  # the first call: compiles, and raises if there is no kernel
        except Exception as exc:  # recorded in the row; the run goes on
            status[provider] = describe_error(exc)
            continue
        if not bool(torch.isfinite(out).all()) or not bool(out.ne(0).any()):
            status[provider] = ("error", "non-finite or all-zero output")
            continue
        if expected is None:
            expected = out
            for i, inputs in enumerate(sets):
                gen = torch.Generator(device=device).manual_seed(1000 + i)
                inputs.grad = torch.randn(out.shape, generator=gen, device=device)
        err = float((out - expected).norm() / expected.norm().clamp_min(1e-30))
        rel_err[provider] = err
        if err > settings.check_rtol:
            status[provider] = ("error", f"forward differs from eager's: relative error {err:.2e}")
            continue
        fns[provider] = fn
    rows = []
    for case in cases:
        rows += _time_mode(case, fns, dict(status), rel_err, sets, settings, device)
    gc.collect()
    return rows


def _time_mode(
    case: Case,
    fns: dict[str, Fn],
    status: dict[str, tuple[str, str]],
    rel_err: dict[str, float],
    sets: list[_Inputs],
    settings: Settings,
    device: torch.device,
) -> list[Row]:
    timer = Timer(device)
    counters = dict.fromkeys(fns, 0)

    def timed_call(provider: str) -> Callable[[], float]:
        def call() -> float:
            inputs = sets[counters[provider] % len(sets)]
            counters[provider] += 1
            return timer(prepare(case.mode, fns[provider], inputs.args, inputs.grad))

        return call

    calls = {}
    for provider in fns:
        try:
            for _ in range(settings.warmup):
                timed_call(provider)()
            calls[provider] = timed_call(provider)
        except Exception as exc:  # e.g. a backward without a kernel: recorded, not raised
            status[provider] = describe_error(exc)
    wait_for_quiet(settings.quiet_wait_s if calls else 0.0)
    probe = Contention()
    samples = interleave(calls, settings)
    foreign = probe.share()
    rows = []
    for provider in PROVIDERS:
        if provider in calls:
            inputs = sets[0]
            peak = peak_bytes(prepare(case.mode, fns[provider], inputs.args, inputs.grad), device)
            rows.append(Row(case, provider, "ok", "", samples[provider], peak, rel_err.get(provider), foreign))
        elif provider in status:
            rows.append(Row(case, provider, *status[provider], rel_err=rel_err.get(provider)))
    return rows


def gemm_gflops(n: int, device: torch.device, settings: Settings) -> float:
    """The rate torch.matmul reaches on an n×n fp32 product here (the GPU target's yardstick), 2·n³ FLOPs."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    timer = Timer(device)
    for _ in range(settings.warmup):
        timer(lambda: a @ b)
    samples = interleave({"matmul": lambda: timer(lambda: a @ b)}, settings)["matmul"]
    return 2 * n**3 / statistics.median(samples) / 1e9


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU if torch sees one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


# ---- the machine ---------------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\d+-core", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_name(device: torch.device) -> str:
    """A stable file name: ``nvidia-h100`` (first two words of the GPU's name) or ``cpu-2core-amd-epyc``."""
    if device.type == "cuda":
        return _slug(" ".join(torch.cuda.get_device_name(device).split()[:2]))
    return f"cpu-{os.cpu_count()}core-{_slug(cpu_model())}"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine_info(device: torch.device) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "device_type": device.type,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "commit": _git("rev-parse", "HEAD"),
        # uncommitted or untracked changes anywhere but in the files this report writes
        "dirty": bool(_git("status", "--porcelain", "--", ".", ":!benchmarks/results", ":!benchmarks/README.md")),
        "available_backends": ck.available_backends(),
        "unavailable": {b: ck.unavailable_reason(b) for b in ck.BACKENDS if ck.unavailable_reason(b)},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def fmt_time(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"
