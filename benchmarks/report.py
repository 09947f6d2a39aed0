"""Measure this machine and regenerate the tables: ``python -m benchmarks.report [--smoke | --full]``.

Runs every suite's cases (benchmarks/workloads.py: the estimator and each single op, every mode, every provider),
the end-to-end training step and the torch.matmul yardstick; writes ``benchmarks/results/<machine>.json`` and
``benchmarks/results/<machine>.md`` (every row), and regenerates the tables in ``benchmarks/README.md`` from all
results files. ``--smoke`` (CI) runs the smallest size once and writes to a temporary directory only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import harness, tables, train_step, workloads
from python.checkpoint import write_atomic

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--smoke", action="store_true", help="smallest size, one round, results to a temp dir (CI)")
    grid.add_argument("--full", action="store_true", help="the full grid (the default on a GPU; hours on 2 CPU cores)")
    p.add_argument("--ops", help=f"comma-separated subset of: {', '.join(workloads.OPS)}")
    for name, what in (("modes", "fwd,bwd,fwdbwd"), ("dims", "d"), ("batches", "B"), ("sizes", "N")):
        p.add_argument(f"--{name}", help=f"comma-separated subset of the grid's {what}")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--machine",
        default=os.environ.get("CSAD_BENCH_MACHINE"),
        help="results file name (default: "
        "from the device, e.g. cpu-2core-amd-epyc, nvidia-h100; env CSAD_BENCH_MACHINE)",
    )
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed rounds per case (default 2)")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the results file's rows for cases not run now (to measure a long grid in several commands)",
    )
    p.add_argument("--retries", type=int, default=1, help="re-measure cases timed under contention (default 1)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end training step")
    p.add_argument("--render-only", action="store_true", help="only regenerate the tables from results/*.json")
    p.add_argument("--out", type=Path, help="directory for the results (default benchmarks/results; smoke: a temp dir)")
    return p


def run(args: argparse.Namespace) -> dict:
    device = harness.pick_device(args.device)
    profile = "smoke" if args.smoke else "full" if args.full or device.type == "cuda" else "cpu"
    settings = harness.SMOKE if args.smoke else harness.Settings(budget_s=args.budget)
    ops = args.ops.split(",") if args.ops else None
    cases = [c for c in workloads.grid(profile, ops) if _selected(c, args)]
    info = harness.machine_info(device)
    print(
        f"{len(cases)} cases ({profile} grid) on {info['device']}, {info['cpu_count']} CPUs, torch {info['torch']}; "
        f"backends here: {info['available_backends']}",
        flush=True,
    )
    start = time.perf_counter()
    shapes = [list(group) for _, group in itertools.groupby(cases, key=lambda c: c.shape)]
    measured: dict[workloads.Case, list[harness.Row]] = {}
    for attempt in range(1 + (0 if args.smoke else args.retries)):
        todo = [s for s in shapes if attempt == 0 or any(_noise(measured[c]) > harness.CONTENDED for c in s)]
        if attempt and todo:
            print(f"re-measuring {len(todo)} shapes timed while other processes used the CPUs", flush=True)
        for shape_cases in todo:
            rows = harness.measure(shape_cases, settings, device)
            for case in shape_cases:
                new = [r for r in rows if r.case == case]
                if case not in measured or _noise(new) < _noise(measured[case]):
                    measured[case] = new
                    _print_case(new)
    reasons = {f"{r.provider}: {r.reason}": r.case.id for rows in measured.values() for r in rows if r.status != "ok"}
    for reason, example in reasons.items():
        print(f"  not timed: {reason} (e.g. {example})")
    e2e: list[dict] = []
    for _ in range(0 if args.no_e2e else 1 + (0 if args.smoke else args.retries)):
        again = train_step.measure(device, settings)
        e2e = again if not e2e or _e2e_noise(again) < _e2e_noise(e2e) else e2e
        if _e2e_noise(e2e) <= harness.CONTENDED:
            break
    for r in e2e:
        print(f"train step  {r['backend']:<10} {harness.fmt_time(r.get('median_s'))} {r['reason'][:100]}", flush=True)
    gemm_n = 256 if args.smoke else 4096
    gemm = {str(gemm_n): harness.gemm_gflops(gemm_n, device, settings)}
    info["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {
        "machine": args.machine or harness.machine_name(device),
        **info,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "settings": {**dataclasses.asdict(settings), "retries": 0 if args.smoke else args.retries},
        "memory_note": harness.MEMORY_NOTE[device.type],
        "gemm_gflops": gemm,
        "runtime_s": time.perf_counter() - start,
        "rows": [row.to_json() for case in cases for row in measured[case]],
        "e2e": e2e,
    }


def _selected(case: workloads.Case, args: argparse.Namespace) -> bool:
    for name, value in (("modes", case.mode), ("dims", case.d), ("batches", case.b), ("sizes", case.n)):
        chosen = getattr(args, name)
        if chosen and str(value) not in chosen.split(","):
            return False
    return True


def _noise(rows: list[harness.Row]) -> float:
    return max((r.foreign_cpu or 0.0 for r in rows), default=0.0)


def _e2e_noise(rows: list[dict]) -> float:
    return max((r.get("foreign_cpu") or 0.0 for r in rows), default=0.0)


def _print_case(rows: list[harness.Row]) -> None:
    cells = [f"{r.provider} {harness.fmt_time(r.median_s) if r.status == 'ok' else r.status}" for r in rows]
    noise = f"  (others used {_noise(rows):.0%} of the CPUs)" if _noise(rows) > harness.CONTENDED else ""
    print(f"{rows[0].case.id:<55} " + " | ".join(cells) + noise, flush=True)


def _part(results: dict) -> dict:
    """What one command measured, kept when results are merged so each part's commit and date stay known."""
    return {"commit": results["commit"], "dirty": results["dirty"], "date": results["date"],
            "rows": len(results["rows"]), "e2e": bool(results["e2e"])}


def _merge(old: dict, new: dict) -> dict:
    def key(r: dict) -> tuple:
        return r["workload"], r["n"], r["provider"]

    new["parts"] = (old.get("parts") or [_part(old)]) + [_part(new)]
    fresh = {key(r) for r in new["rows"]}
    new["rows"] = [r for r in old.get("rows", []) if key(r) not in fresh] + new["rows"]
    new["e2e"] = new["e2e"] or old.get("e2e", [])
    new["runtime_s"] += old.get("runtime_s", 0.0)
    return new


def _dumps(results: dict) -> str:
    """JSON with one line per row, so a re-run diffs row by row."""
    head = json.dumps({k: v for k, v in results.items() if k != "rows"}, indent=1)
    rows = ",\n".join("  " + json.dumps(row) for row in results["rows"])
    return f'{head[:-2]},\n "rows": [\n{rows}\n ]\n}}\n'


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render_only:
        tables.regenerate(RESULTS, HERE / "README.md")
        return 0
    results = run(args)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="csad-bench-smoke-")) if args.smoke else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{results['machine']}.json"
    if args.merge and path.exists():
        results = _merge(json.loads(path.read_text()), results)
    text = _dumps(results)
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))
    readme = HERE / "README.md" if out_dir.resolve() == RESULTS.resolve() else out_dir / "README.md"
    tables.regenerate(out_dir, readme)
    print(f"wrote {path}, {path.with_suffix('.md')} and {readme} in {results['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
