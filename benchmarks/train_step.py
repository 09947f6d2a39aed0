"""End to end: one CSAD training step (K = 10) timed per backend. ``python -m benchmarks.train_step [--device cpu]``.

The step is the training package's own: ``python.methods.CSAD.step("adversarial", batch)`` on the
``python.models.DebiasNet`` of the Adult row of DESIGN.md §3 (41 input features, F 41→64, D_y and D_b 64→32,
P_y 32→1, P_b 32→2, M heads 32-32-32), batch 128, gender bias (2 classes), Adam, λ = 10, K = 10: one step of
F, D_y, P_y on the target loss; K steps of D_b, P_b on detached features; K steps of M maximising I on detached
h^y, h^b; one step of F alone minimising λ·I. Only the estimator's ``backend`` differs between the timed models.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections.abc import Iterator, Sequence

import torch

import csad_kernels as ck
from benchmarks.harness import (
    Contention,
    Settings,
    Timer,
    describe_error,
    fmt_time,
    interleave,
    pick_device,
    quartiles,
    wait_for_quiet,
)
from python.config import TrainConfig
from python.data.base import DataBundle, Split
from python.methods import Batch
from python.methods.csad import CSAD
from python.models import DebiasNet

FEATURES, BATCH, K, LAMBDA = 41, 128, 10, 10.0
BACKENDS = ck.BACKENDS  # "reference" first: the baseline of the §9 end-to-end target


def adult_sized_step(backend: str, device: torch.device) -> CSAD:
    """The trainer's CSAD method at Adult sizes, with the estimator on ``backend``."""
    config = TrainConfig(dataset="adult", method="csad", batch_size=BATCH, k_inner=K, lambda_=LAMBDA,
                         backend=backend)
    split = Split((torch.zeros(2, FEATURES),), torch.zeros(2, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long))
    bundle = DataBundle("adult", "simulated", "benchmark batch", {s: split for s in ("train", "val", "test")},
                        n_classes=2, bias_classes=(2,), bias_names=("gender",))
    net = DebiasNet("adult", split.inputs, bundle.n_classes, bundle.bias_classes).to(device)
    method = CSAD(net, bundle, config)
    method.extra.to(device)
    return method


def measure(device: torch.device, settings: Settings, backends: Sequence[str] = BACKENDS) -> list[dict]:
    """Median time of one step per backend, backends interleaved round by round on 8 rotated minibatches."""
    gen = torch.Generator(device=device).manual_seed(0)
    batches = [
        (
            torch.randn(BATCH, FEATURES, generator=gen, device=device),
            torch.randint(0, 2, (BATCH,), generator=gen, device=device),
            torch.randint(0, 2, (BATCH, 1), generator=gen, device=device),
        )
        for _ in range(8)
    ]
    timer, results, calls = Timer(device), {}, {}
    for backend in backends:
        reason = ck.unavailable_reason(backend)
        if reason is None and backend == "triton" and device.type != "cuda":
            reason = "TRITON_INTERPRET=1 runs Triton in its CPU interpreter: its times are not kernel times"
        if reason:
            results[backend] = {"status": "skipped", "reason": reason}
            continue
        torch.manual_seed(0)
        method = adult_sized_step(backend, device)
        steps = itertools.count()

        def call(method: CSAD = method, steps: Iterator[int] = steps) -> float:
            x, y, bias = batches[next(steps) % len(batches)]
            return timer(lambda: method.step("adversarial", Batch((x,), y, bias)))

        try:
            for _ in range(max(settings.warmup, 1)):
                call()
        except Exception as exc:  # an unavailable kernel or a failure is reported, not raised
            status, why = describe_error(exc)
            results[backend] = {"status": status, "reason": why}
            continue
        calls[backend] = call
    wait_for_quiet(settings.quiet_wait_s if calls else 0.0)
    probe = Contention()
    timed = interleave(calls, settings)
    foreign = probe.share()
    for backend, samples in timed.items():
        median = statistics.median(samples)
        results[backend] = {
            "status": "ok",
            "reason": "",
            "median_s": median,
            "rounds": len(samples),
            "foreign_cpu": foreign,
            "quartiles_s": quartiles(samples),
        }
    return [{"backend": b, **results[b]} for b in backends if b in results]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of timed rounds (default 5)")
    args = parser.parse_args(argv)
    rows = measure(pick_device(args.device), Settings(budget_s=args.budget))
    base = next((r["median_s"] for r in rows if r["backend"] == "reference" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] == "ok":
            print(f"{r['backend']:<10} {fmt_time(r['median_s']):>10}  {base / r['median_s']:.2f}x vs reference")
        else:
            print(f"{r['backend']:<10} {r['status']}: {r['reason']}")


if __name__ == "__main__":
    main()
