"""Post-hoc debiasing of frozen features: ``python -m python.postprocess --method deepminmax --dataset adult``.

Features Z come from a features file (--features), from a trained run's encoder F (--run), or, with neither, from a
vanilla baseline trained here first (OUT/encoder). DeepMinMax (DESIGN §6) learns Z̃ = h_θ(Z) on the train part;
a logistic regression predicts the target from Z (before) and from Z̃ (after) on the test part (the bias-free test
split where the dataset has one), beside the bias leakage of each. Writes OUT/metrics.json and OUT/embedding.png.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import DATASETS
from ..deepminmax import DeepMinMax, as_columns
from ..report import write_json_atomic
from .baseline import add_data_flags, data_settings, train_baseline
from .downstream import discrete_bias, evaluate
from .features import from_run, load_features
from .plots import plot_embedding

QUICK_EPOCHS = 5


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m python.postprocess", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=("deepminmax",), default="deepminmax",
                   help="post-processing method (default deepminmax, the only one)")
    p.add_argument("--dataset", choices=DATASETS, default="mpower",
                   help="dataset name: recorded in metrics.json; with neither --features nor --run, the dataset "
                        "whose baseline is trained first (default mpower)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--features", metavar="FILE",
                        help=".npz or .pt with z (n, d), b (n,) or (n, K), y (n,), optional split (train/test or 0/1; "
                             "default a seeded 70/30 split)")
    source.add_argument("--run", metavar="DIR", help="a training run folder (runs/NAME): F's features of its "
                        "checkpoints/<method>.pt on the train and test splits")
    add_data_flags(p)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_EPOCHS} DeepMinMax epochs and, when a baseline is trained, quick data")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/postprocess_DATASET_seedS)")
    p.add_argument("--epochs", type=int, metavar="N", help="DeepMinMax epochs (default 200; --quick 5)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=0.5, metavar="X",
                   help="weight λ in [0, 1] of the CLUB term; 1 − λ weighs the retaining term (default 0.5)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=128, metavar="N",
                   help="DeepMinMax minibatch size (default 128)")
    p.add_argument("--lr", type=float, default=0.005, metavar="X", help="DeepMinMax Adam learning rate (default 0.005)")
    p.add_argument("--q-steps", dest="q_steps", type=int, default=5, metavar="N",
                   help="Adam steps of the CLUB network q per step of h_θ (default 5; see python/deepminmax.py)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the split, initialisation and batches")
    p.add_argument("--embedding", choices=("auto", "tsne", "pca"), default="auto",
                   help="2-D embedding of the plot: t-SNE when scikit-learn is importable (auto), or PCA")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return p


def gather(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], str]:
    """The train/test features and labels from the chosen source, and the source's name."""
    if args.features:
        data = load_features(args.features, seed=args.seed)
        t = data["is_train"]
        b = as_columns(data["b"])
        parts = {name: {"z": data["z"][m], "b": b[m], "y": data["y"][m]} for name, m in (("train", t), ("test", ~t))}
        names = [f"b{k}" for k in range(b.shape[1])] if b.shape[1] > 1 else ["b"]
        return {**parts, "bias_names": names}, "features"
    if args.run:
        return from_run(Path(args.run)), "run"
    return from_run(train_baseline(args.dataset, out, args.quick, args.seed, data_settings(args))), "trained baseline"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if not 0.0 <= args.lambda_ <= 1.0:
        raise ValueError(f"--lambda must lie in [0, 1], got {args.lambda_}")
    epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else 200)
    if epochs < 0:
        raise ValueError(f"--epochs must be >= 0, got {epochs}")
    out = Path(args.out) if args.out else Path("runs") / f"postprocess_{args.dataset}_seed{args.seed}"
    data, source = gather(args, out)
    train, test, names = data["train"], data["test"], data["bias_names"]
    mean, std = train["z"].mean(0), train["z"].std(0).clamp_min(1e-8)  # DeepMinMax sees standardised Z
    torch.manual_seed(args.seed)
    model = DeepMinMax.for_data(train["z"], train["b"], lambda_=args.lambda_, batch_size=args.batch_size, lr=args.lr,
                                  q_steps=args.q_steps)
    history = model.fit((train["z"] - mean) / std, train["b"], epochs=epochs, seed=args.seed, progress=args.progress)
    zt_train, zt_test = (model.transform((part["z"] - mean) / std) for part in (train, test))
    b_test = discrete_bias(test["b"], train["b"])
    before = evaluate(train["z"], train["y"], test["z"], test["y"], b_test, names, args.seed)
    after = evaluate(zt_train, train["y"], zt_test, test["y"], b_test, names, args.seed)
    metrics = {"method": args.method, "dataset": args.dataset, "source": source, "lambda": args.lambda_,
               "input": args.features or args.run, "epochs": epochs,
               "q_steps": args.q_steps, "seed": args.seed, "n_train": len(train["y"]),
               "n_test": len(test["y"]),
               "final_losses": history[-1] if history else None, "before": before, "after": after}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(metrics, out / "metrics.json")
    plot_embedding(test["z"], zt_test, b_test[:, 0], names[0], out / "embedding.png", args.embedding, args.seed)
    print(summary_table(before, after, names))
    print(f"\nwrote {out / 'metrics.json'} and {out / 'embedding.png'}")
    return metrics


def summary_table(before: dict[str, Any], after: dict[str, Any], names: Sequence[str]) -> str:
    """A before/after table of target accuracy (AUC) and bias-leakage accuracy against chance."""
    rows = [("target accuracy", before["accuracy"], after["accuracy"])]
    if "auc" in before:
        rows.append(("target AUC", before["auc"], after["auc"]))
    for name in names:
        lb, la = before["bias_leakage"][name], after["bias_leakage"][name]
        rows.append((f"leakage {name} (chance {lb['chance_accuracy']:.3f})", lb["accuracy"], la["accuracy"]))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}}  {'before':>8}  {'after':>8}"]
    lines += [f"{label:{width}}  {b:8.3f}  {a:8.3f}" for label, b, a in rows]
    return "\n".join(lines)
