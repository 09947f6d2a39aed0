"""End to end: one CSAD training step (K = 10) timed per backend. ``python -m benchmarks.train_step [--device cpu]``.

The training package ``python/`` does not exist yet, so the step is built here from torch and
``csad_kernels.CrossSampleMI`` only, at the Adult sizes of DESIGN.md §3: 41 input features, F 41→64, D_y and D_b
64→32, P_y 32→1, P_b 32→2, M heads 32-32-32, batch 128 (gender bias, 2 classes), Adam, λ = 10. One step is
Algorithm 2's inner loop: one step of F, D_y, P_y on the target loss; K steps of D_b, P_b on detached features;
K steps of M maximising I on detached h^y, h^b; one step of F alone minimising λ·I. Once ``python/`` has its
trainer, this entry point will time that trainer's step instead of this stand-in.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections.abc import Iterator, Sequence

import torch
from torch import nn

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

FEATURES, HIDDEN, BRANCH, BATCH, K, LAMBDA = 41, 64, 32, 128, 10, 10.0
BACKENDS = ck.BACKENDS  # "reference" first: the baseline of the §9 end-to-end target


class AdultCSAD(nn.Module):
    def __init__(self, backend: str) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU())
        self.d_y = nn.Sequential(nn.Linear(HIDDEN, BRANCH), nn.ReLU())
        self.p_y = nn.Linear(BRANCH, 1)
        self.d_b = nn.Sequential(nn.Linear(HIDDEN, BRANCH), nn.ReLU())
        self.p_b = nn.Linear(BRANCH, 2)
        self.m = ck.CrossSampleMI((BRANCH, 32, 32), backend=backend)
        adam = torch.optim.Adam
        self.opt_y = adam([*self.f.parameters(), *self.d_y.parameters(), *self.p_y.parameters()], lr=1e-3)
        self.opt_b = adam([*self.d_b.parameters(), *self.p_b.parameters()], lr=1e-3)
        self.opt_m = adam(self.m.parameters(), lr=1e-3)
        self.opt_f = adam(self.f.parameters(), lr=1e-3)

    def step(self, x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """One training step; returns the adversarial loss λ·I."""
        loss_y = nn.functional.binary_cross_entropy_with_logits(self.p_y(self.d_y(self.f(x))).squeeze(-1), y)
        self.opt_y.zero_grad()
        loss_y.backward()
        self.opt_y.step()
        h = self.f(x).detach()
        for _ in range(K):
            loss_b = nn.functional.cross_entropy(self.p_b(self.d_b(h)), bias)
            self.opt_b.zero_grad()
            loss_b.backward()
            self.opt_b.step()
        with torch.no_grad():
            hy, hb = self.d_y(h), self.d_b(h)
        for _ in range(K):
            loss_m = -self.m(hy, hb, bias)
            self.opt_m.zero_grad()
            loss_m.backward()
            self.opt_m.step()
        z = self.f(x)
        loss_f = LAMBDA * self.m(self.d_y(z), self.d_b(z), bias)
        self.opt_f.zero_grad()
        loss_f.backward()
        self.opt_f.step()
        return loss_f.detach()


def measure(device: torch.device, settings: Settings, backends: Sequence[str] = BACKENDS) -> list[dict]:
    """Median time of one step per backend, backends interleaved round by round on 8 rotated minibatches."""
    gen = torch.Generator(device=device).manual_seed(0)
    batches = [
        (
            torch.randn(BATCH, FEATURES, generator=gen, device=device),
            torch.randint(0, 2, (BATCH,), generator=gen, device=device).float(),
            torch.randint(0, 2, (BATCH,), generator=gen, device=device),
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
        model = AdultCSAD(backend).to(device)
        steps = itertools.count()

        def call(model: AdultCSAD = model, steps: Iterator[int] = steps) -> float:
            x, y, bias = batches[next(steps) % len(batches)]
            return timer(lambda: model.step(x, y, bias))

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
