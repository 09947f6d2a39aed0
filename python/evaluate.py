"""Evaluate a finished run again from its checkpoints: ``python -m python.evaluate --run runs/NAME``.

Rebuilds the run's data (from its config.yaml, or from --data-root) and networks, loads the final weights of the
method and of the baseline trained beside it, recomputes every metric and bias leakage, and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from . import cli
from . import config as cfg
from .data import DataBundle, load_dataset
from .report import table
from .trainer import RunResult, Trainer, resolve_device


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m python.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="DIR", help="run folder written by python -m python.train")
    p.add_argument("--data-root", metavar="DIR", help="evaluate on the real data here instead of the run's data")
    p.add_argument("--device", default="cpu", help="device to evaluate on (default cpu)")
    return p


def evaluate_checkpoint(config: cfg.TrainConfig, bundle: DataBundle, method: str, path: Path,
                        device: torch.device) -> RunResult:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has no checkpoint of {method}")
    trainer = Trainer(config, bundle, method, path, device, show_progress=False)
    _, _, history, wall, result = trainer.restore()
    if result is None:
        raise ValueError(f"{path} is the checkpoint of an unfinished run; finish it with python -m python.train "
                         f"--out {config.run_dir} --resume")
    metrics, leakage = trainer.final_evaluation()
    return RunResult(method, metrics, leakage, history, wall)


def main(argv: Sequence[str] | None = None) -> dict[str, RunResult]:
    args = parser().parse_args(argv)
    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run / 'config.yaml'} does not exist: --run must be a folder written by "
                                "python -m python.train")
    config = dataclasses.replace(cfg.load_saved(run / "config.yaml"), out=str(run))
    if args.data_root:
        config = dataclasses.replace(config, data_root=args.data_root)
    device = resolve_device(args.device)
    bundle = load_dataset(config)
    results = {config.method: evaluate_checkpoint(config, bundle, config.method,
                                                  run / "checkpoints" / f"{config.method}.pt", device)}
    baseline_path = run / "checkpoints" / "baseline.pt"
    if config.method != "baseline" and baseline_path.is_file():
        results["baseline"] = evaluate_checkpoint(config, bundle, "baseline", baseline_path, device)
    print(f"{run}: {config.dataset} ({bundle.data_source}: {bundle.description})")
    print(table(results[config.method], results.get("baseline"), bundle.bias_names, bundle.test_is_bias_free))
    return results


if __name__ == "__main__":
    cli.run(main)
