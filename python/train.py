"""Train a debiased model: ``csad-train --dataset mpower --method csad`` or ``python -m csad.train ...`` once
installed, ``python -m python.train ...`` from the repository root.

Trains the chosen method and, unless --no-baseline, the vanilla baseline on the same data in the same run, then
prints a table of both on the validation split and the bias-free test split. Everything goes to runs/NAME/:
config.yaml, checkpoints/, metrics.json, history.csv (losses and the validation metric per method and epoch) and
curves.png.

Several GPUs or nodes: ``torchrun --nproc-per-node=K -m python.train ...`` (docs/distributed.md); --batch-size
stays the global minibatch, and rank 0 alone prints and writes the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import os
import shutil
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import csad_kernels as ck

from . import cli, distributed
from . import config as cfg
from .data import load_dataset
from .flags import add_flag, flag_of, option_string
from .report import plot_curves, table, write_history_csv, write_json_atomic
from .trainer import RunResult, Trainer, resolve_device


def parser() -> argparse.ArgumentParser:
    """The flags: one per :class:`~python.config.TrainConfig` field, with its help (the common settings and the
    datasets' own, :data:`python.data.registry.DATASETS`), then those of the run itself."""
    p = argparse.ArgumentParser(prog=f"python -m {__package__}.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = typing.get_type_hints(cfg.TrainConfig)
    for field in dataclasses.fields(cfg.TrainConfig):
        add_flag(p, field.name, kinds[field.name], flag_of(field))
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML or JSON file of settings (keys as the flags, e.g. 'lambda: 2'); flags override it")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (or the default folder) from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder instead of failing")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    return p


def flag_name(setting: str) -> str:
    """The flag of the config setting ``setting``: ``lambda_`` -> ``--lambda``."""
    field = next(f for f in dataclasses.fields(cfg.TrainConfig) if f.name == setting)
    return option_string(field.name, flag_of(field))


RUN_FLAGS = ("config", "resume", "overwrite", "progress")  # flags of the run itself, not config settings


@dataclass(frozen=True)
class RunOptions:
    """How to run a config: continue its run folder from the last checkpoint (``resume``), replace a run folder that
    holds a run (``overwrite``), show progress bars (``progress``)."""

    resume: bool = False
    overwrite: bool = False
    progress: bool = True


def given_settings(argv: Sequence[str] | None) -> tuple[dict[str, Any], argparse.Namespace]:
    """The settings ``argv`` gives, by field name (its flags over its --config file; flags not given left out),
    and all its parsed flags."""
    args = parser().parse_args(argv)
    file_values = cfg.read_config_file(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k not in RUN_FLAGS and v is not None}
    return {**file_values, **flags}, args


def config_for(given: dict[str, Any], resume: bool = False) -> cfg.TrainConfig:
    """The config of a run from the settings ``given`` (field name -> value) over the defaults; with ``resume``, the
    saved config of its run folder, which ``given`` may not contradict (device and backend may change)."""
    fresh = cfg.resolve(given)
    if not resume:
        return fresh
    saved_path = fresh.run_dir / "config.yaml"
    if not saved_path.is_file():
        raise SystemExit(f"--resume: no run to continue in {fresh.run_dir} (no config.yaml); give its --out")
    if not checkpoints(fresh.run_dir):
        raise SystemExit(f"--resume: {fresh.run_dir} holds no checkpoint (the run stopped before its first epoch "
                         "ended): nothing to continue; start it again without --resume")
    saved = cfg.load_saved(saved_path)
    if saved.quick != fresh.quick:
        given_word, kind = ("with", "a full") if fresh.quick else ("without", "a --quick")
        raise SystemExit(f"--resume {given_word} --quick: {fresh.run_dir} holds {kind} run; resume it with the same "
                         "--quick setting, or give another --out")
    merged = cfg.merge_for_resume(saved, given)
    return dataclasses.replace(merged, out=str(fresh.run_dir))  # the folder may have been moved since


def settings(argv: Sequence[str] | None) -> tuple[cfg.TrainConfig, argparse.Namespace]:
    """The config ``argv`` asks for (on --resume: the saved one) and its parsed flags."""
    given, args = given_settings(argv)
    return config_for(given, args.resume), args


def checked_settings(argv: Sequence[str] | None) -> tuple[cfg.TrainConfig, argparse.Namespace]:
    """:func:`settings`, with the checks that depend on the number of processes."""
    config, args = settings(argv)
    distributed.check_batch_size(config.batch_size)
    return config, args


def checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints a run has written in ``run_dir`` (none: it stopped before its first epoch ended)."""
    return sorted((run_dir / "checkpoints").glob("*.pt"))


def failed_start(run_dir: Path) -> bool:
    """True when ``run_dir`` holds only what a run writes before its first checkpoint (config.yaml, an empty
    checkpoints/): a start that failed or was killed, e.g. while loading data. A retry replaces it."""
    entries = {p.name for p in run_dir.iterdir()}
    return entries <= {"config.yaml", "checkpoints"} and not any((run_dir / "checkpoints").glob("*"))


_LOCKS: list[int] = []  # file descriptors of the run-folder locks this process holds


def lock_run_dir(run_dir: Path) -> None:
    """Take the lock ``.NAME.lock`` beside ``run_dir`` for the rest of this process (the OS releases it on exit or
    kill); SystemExit when another run holds it. The lock file sits beside the folder so --overwrite can remove it."""
    path = run_dir.parent / f".{run_dir.name}.lock"
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise SystemExit(f"cannot write the run folder {run_dir}: {exc.strerror} ({path})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(f"{run_dir} is in use: another run is writing it (lock {path}); wait for it to end, or give "
                         "another --out") from None
    _LOCKS.append(fd)


def unlock_run_dirs() -> None:
    while _LOCKS:
        os.close(_LOCKS.pop())  # closing the descriptor releases the flock


def prepare_run_dir(config: cfg.TrainConfig, options: RunOptions) -> Path:
    run_dir = config.run_dir
    lock_run_dir(run_dir)
    try:
        if run_dir.exists() and any(run_dir.iterdir()) and not options.resume:
            if not (options.overwrite or failed_start(run_dir)):
                raise SystemExit(f"{run_dir} already holds a run: pass --resume to continue it, --overwrite to "
                                 "replace it, or --out for a new folder")
            shutil.rmtree(run_dir)
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        cfg.save(config, run_dir / "config.yaml")
    except OSError as exc:
        raise SystemExit(f"cannot write the run folder {run_dir}: {exc.strerror or exc}") from None
    return run_dir


def check_batch_size_fits(config: cfg.TrainConfig, n_train: int, say: Any) -> None:
    """A --batch-size above the train split's size draws each minibatch of the whole split: say so."""
    if config.batch_size > n_train:
        say(f"  note: --batch-size {config.batch_size} exceeds the {n_train} training samples: every minibatch is "
            f"the whole train split ({n_train} samples)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as the flags say (in one process, or as one rank of a torchrun job) and return metrics.json's dict."""
    return in_process_group(lambda: train_from_argv(argv))


def run_training(config: cfg.TrainConfig, options: RunOptions = RunOptions()) -> dict[str, Any]:
    """Train ``config`` (in one process, or as one rank of a torchrun job, each rank with the same config) into its
    run folder and return metrics.json's dict: what ``python -m python.train`` does with the flags that give
    ``config``. To continue a run, pass ``config_for(given, resume=True)`` with ``RunOptions(resume=True)``."""
    def checked_run() -> dict[str, Any]:
        cfg.validate(config)
        distributed.check_batch_size(config.batch_size)
        return train(config, options)

    return in_process_group(checked_run)


def in_process_group(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()`` inside the torchrun process group when there is one, releasing the run-folder locks after it."""
    started = distributed.setup()
    try:
        metrics = run()
    except BaseException as exc:
        unlock_run_dirs()
        if not started:
            raise
        echo = distributed.is_main() or not distributed.raised_on_main(exc)
        distributed.close(wait=False)
        if echo:
            raise
        # rank 0 reports the error (or prints --help); the other ranks leave quietly with the same status
        raise SystemExit(exc.code if isinstance(exc, SystemExit) and not isinstance(exc.code, str) else 2) from None
    unlock_run_dirs()
    if started:
        distributed.close()
    return metrics


def train_from_argv(argv: Sequence[str] | None) -> dict[str, Any]:
    # rank 0 reads the settings (on --resume: the saved config.yaml); all ranks get them
    config, args = distributed.from_main(lambda: checked_settings(argv))
    return train(config, RunOptions(resume=args.resume, overwrite=args.overwrite, progress=args.progress))


def train(config: cfg.TrainConfig, options: RunOptions) -> dict[str, Any]:
    """Train ``config`` as :func:`run_training` says, inside the process group."""
    device = resolve_device(config.device)
    try:
        backend = ck.selected_backend(config.backend, device)
    except (ck.BackendUnavailableError, ValueError) as exc:
        raise SystemExit(f"--backend {config.backend}: {exc}") from exc
    # rank 0 prepares the run folder
    run_dir = distributed.from_main(lambda: prepare_run_dir(config, options))
    with distributed.node_main_first():  # one process per node fills the data cache
        bundle = load_dataset(config)
    say = print if distributed.is_main() else _silent
    say(f"csad: {config.dataset} ({bundle.data_source}: {bundle.description})")
    say("  " + ", ".join(f"{name} {len(split)}" for name, split in bundle.splits.items())
        + f" samples; method {config.method}; estimator backend {backend}; device {device}; seed {config.seed}")
    for line in bundle.log:
        say(f"  data: {line}")
    say(f"  run folder: {run_dir}")
    check_batch_size_fits(config, len(bundle.splits["train"]), say)

    def fit(method: str) -> RunResult:
        trainer = Trainer(config, bundle, method, run_dir / "checkpoints" / f"{method}.pt", device,
                          show_progress=options.progress)
        return trainer.fit(resume=options.resume)

    baseline = fit("baseline") if config.baseline and config.method != "baseline" else None
    result = fit(config.method)
    metrics = {
        "dataset": config.dataset, "method": config.method, "data_source": bundle.data_source,
        "data_description": bundle.description, "data_log": bundle.log, "seed": config.seed, "backend": backend,
        "device": str(device), "world_size": distributed.world_size(), "wall_time_s": result.wall_time_s,
        "metrics": result.metrics, "bias_leakage": result.bias_leakage,
        "baseline": baseline.to_dict() if baseline else None,
    }
    if not distributed.is_main():
        return metrics
    write_json_atomic(metrics, run_dir / "metrics.json")
    primary = "auc" if bundle.n_classes == 2 else "accuracy"
    trained = [r for r in (baseline, result) if r is not None]
    write_history_csv(trained, primary, run_dir / "history.csv")
    plot_curves(trained, primary, run_dir / "curves.png")
    say("")
    say(table(result, baseline, bundle.bias_names, bundle.test_is_bias_free))
    say(f"\nwrote {run_dir / 'metrics.json'}, history.csv and curves.png ({result.wall_time_s:.0f} s of training)")
    return metrics


def _silent(*args: Any, **kwargs: Any) -> None:
    """``print`` on ranks other than 0."""


def console() -> None:
    """The ``csad-train`` command: :func:`main` on ``sys.argv``, user errors as one line and exit status 2."""
    cli.run(main)


if __name__ == "__main__":
    console()
