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

import numpy as np
import torch

from . import cli
from .config import DATASETS
from .deepminmax import DeepMinMax, as_columns
from .metrics import bias_leakage, fit_logistic_regression, roc_auc
from .report import write_json_atomic

QUICK_EPOCHS = 5
EMBED_POINTS = 1000


# ----- data

def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"features file {path}: {what}")


def load_features(path: str | Path, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Read a ``.npz`` or ``.pt`` file of ``z (n, d)`` float, ``b (n,)``/``(n, K)``, ``y (n,)`` and optional ``split``.

    ``split`` holds "train"/"test" strings or 0 (train) / 1 (test); without it a seeded 70/30 split is drawn.
    Returns z, b, y and ``is_train (n,)`` bool. Raises ``ValueError`` naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    raw = _read(path)
    for key in ("z", "b", "y"):
        if key not in raw:
            raise _fail(path, f"missing key {key!r} (has {sorted(raw)}); expected z (n, d), b (n,) or (n, K), y (n,)")
    z, b, y = (_tensor(path, k, raw[k]) for k in ("z", "b", "y"))
    if z.dim() != 2 or not z.is_floating_point():
        raise _fail(path, f"z must be a 2-D float array (n, d), got shape {tuple(z.shape)} dtype {z.dtype}")
    if b.dim() not in (1, 2):
        raise _fail(path, f"b must be (n,) or (n, K), got shape {tuple(b.shape)}")
    if y.dim() != 1 or y.is_floating_point() and not torch.equal(y, y.round()):
        raise _fail(path, f"y must be (n,) integer labels, got shape {tuple(y.shape)} dtype {y.dtype}")
    n = len(z)
    if len(b) != n or len(y) != n:
        raise _fail(path, f"mismatched n: z has {n} rows, b {len(b)}, y {len(y)}")
    if n < 4:
        raise _fail(path, f"needs at least 4 samples, got {n}")
    for key, value in (("z", z), ("b", b)):
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise _fail(path, f"{key} has {int((~torch.isfinite(value)).sum())} non-finite values")
    is_train = _split(path, raw.get("split"), n, seed)
    return {"z": z.float(), "b": b if b.is_floating_point() else b.long(), "y": y.long(), "is_train": is_train}


def _read(path: Path) -> dict[str, Any]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as exc:
            raise _fail(path, f"cannot read as .npz ({exc})") from exc
    if path.suffix == ".pt":
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise _fail(path, f"cannot read as .pt with weights_only=True ({exc})") from exc
        if not isinstance(data, dict):
            raise _fail(path, f"must hold a dict of arrays, got {type(data).__name__}")
        return data
    raise _fail(path, f"unknown suffix {path.suffix!r}; expected .npz or .pt")


def _tensor(path: Path, key: str, value: Any) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"{key} is not a numeric array ({exc})") from exc


def _split(path: Path, split: Any, n: int, seed: int) -> torch.Tensor:
    """``is_train (n,)`` bool from a split array, or a seeded 70/30 split when ``split`` is None."""
    if split is None:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        is_train = torch.zeros(n, dtype=torch.bool)
        is_train[order[: int(round(0.7 * n))]] = True
        return is_train
    values = np.asarray(split if not isinstance(split, torch.Tensor) else split.numpy())
    if values.shape != (n,):
        raise _fail(path, f"split must be (n,) = ({n},), got shape {values.shape}")
    names = np.char.lower(values.astype(str))
    unknown = sorted(set(names.tolist()) - {"train", "test", "0", "1"})
    if unknown:
        raise _fail(path, f"split values must be train/test or 0/1, got {unknown[:5]}")
    is_train = torch.from_numpy(np.isin(names, ["train", "0"]))
    if is_train.sum() < 2 or (~is_train).sum() < 2:
        raise _fail(path, "split needs at least 2 train and 2 test samples")
    return is_train


def from_run(run: Path, device: str = "cpu") -> dict[str, Any]:
    """F's features of a trained run on its train and test splits: {"train": {z, b, y}, "test": ..., bias_names}."""
    from .config import load_saved
    from .data import load_dataset
    from .trainer import Trainer

    config = load_saved(run / "config.yaml")
    bundle = load_dataset(config)
    ckpt = run / "checkpoints" / f"{config.method}.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"run {run}: no checkpoint {ckpt}")
    trainer = Trainer(config, bundle, config.method, ckpt, torch.device(device), show_progress=False)
    trainer.restore()
    parts = {}
    for name in ("train", "test"):
        split = trainer.splits[name]
        parts[name] = {"z": trainer.outputs(split.inputs)["features"], "b": split.bias.cpu(), "y": split.y.cpu()}
    return {**parts, "bias_names": list(bundle.bias_names), "test_is_bias_free": bundle.test_is_bias_free}


# the train CLI's data flags that the trained baseline takes from this CLI: (flag, dest, type; None for a switch)
DATA_FLAGS = (("--data-root", "data_root", str), ("--download", "download", None), ("--cache-dir", "cache_dir", str),
              ("--split", "split", int), ("--bias", "bias", str), ("--sigma2", "sigma2", float),
              ("--csv", "csv", str), ("--target", "target", str), ("--bias-bins", "bias_bins", int))


def data_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`DATA_FLAGS` given on this command line, as config settings (field name -> value)."""
    return {dest: getattr(args, dest) for _, dest, _ in DATA_FLAGS if getattr(args, dest) not in (None, False)}


def train_baseline(dataset: str, out: Path, quick: bool, seed: int, data: dict[str, Any] | None = None) -> Path:
    """Train the dataset's vanilla baseline into ``out/encoder`` (reused when it is already complete); ``data``:
    the data settings of its config (``{"data_root": DIR}`` ...)."""
    from . import train

    run = out / "encoder"
    if (run / "metrics.json").is_file():
        return run
    given = {"dataset": dataset, "method": "baseline", "baseline": False, "out": str(run), "seed": seed,
             **(data or {}), **({"quick": True} if quick else {})}
    train.run_training(train.config_for(given), train.RunOptions(overwrite=True, progress=False))
    return run


# ----- downstream

def discrete_bias(b: torch.Tensor, b_train: torch.Tensor) -> torch.Tensor:
    """``(n, K)`` int labels for leakage: integer B as is, continuous B split at the train median per column."""
    b, b_train = as_columns(b), as_columns(b_train)
    if not b.is_floating_point():
        return b.long()
    return (b > b_train.median(0).values).long()


def evaluate(z_train: torch.Tensor, y_train: torch.Tensor, z_test: torch.Tensor, y_test: torch.Tensor,
             b_test: torch.Tensor, bias_names: Sequence[str], seed: int) -> dict[str, Any]:
    """Downstream accuracy (and AUC when binary) of a logistic regression, and bias leakage per bias column."""
    logits = fit_logistic_regression(z_train, y_train, max(int(y_train.max()) + 1, 2))(z_test)
    out: dict[str, Any] = {"accuracy": float((logits.argmax(-1) == y_test).double().mean())}
    if logits.shape[1] == 2:
        out["auc"] = roc_auc(logits[:, 1] - logits[:, 0], y_test)
    out["bias_leakage"] = {name: bias_leakage(z_test, b_test[:, k], seed=seed) for k, name in enumerate(bias_names)}
    return out


# ----- plot

def embed(x: torch.Tensor, method: str, seed: int) -> np.ndarray:
    """2-D embedding ``(n, 2)`` of ``x (n, d)``: t-SNE (when scikit-learn is importable and asked) or PCA."""
    x = x.double()
    if method in ("auto", "tsne") and len(x) > 5:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            if method == "tsne":
                raise
        else:
            perplexity = min(30.0, (len(x) - 1) / 3)
            return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x.numpy())
    centred = x - x.mean(0)
    _, _, v = torch.pca_lowrank(centred, q=min(2, x.shape[1]), center=False)
    coords = (centred @ v).numpy()
    return coords if coords.shape[1] == 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def plot_embedding(before: torch.Tensor, after: torch.Tensor, bias: torch.Tensor, bias_name: str, path: Path,
                   method: str, seed: int) -> None:
    """Side-by-side 2-D embeddings of ``before``/``after (n, d)`` coloured by ``bias (n,)`` (paper Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = torch.randperm(len(before), generator=torch.Generator().manual_seed(seed))[:EMBED_POINTS]
    values = bias[keep]
    classes = values.unique().tolist()
    categorical = not values.is_floating_point() and len(classes) <= 12
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, x, title in ((axes[0], before, "before"), (axes[1], after, "after (DeepMinMax)")):
        xy = embed(x[keep], method, seed)
        if categorical:
            for i, c in enumerate(classes):
                at = (values == c).numpy()
                ax.scatter(xy[at, 0], xy[at, 1], s=6, alpha=0.7, color=plt.cm.tab10(i % 10), label=f"{bias_name} {c}")
        else:
            points = ax.scatter(xy[:, 0], xy[:, 1], c=values.numpy(), s=6, cmap="coolwarm", alpha=0.8)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    if categorical:
        axes[1].legend(fontsize=7, markerscale=2, loc="best")
    else:
        fig.colorbar(points, ax=axes, label=bias_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----- CLI

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
    data_help = {"data_root": "folder of the real data, as for python -m python.train (Adult: DIR/adult/adult.data|"
                              "adult.test; default the copy shipped with csad)",
                 "download": "Adult: fetch the UCI files into --data-root/adult/ when missing (sha256 checked)",
                 "cache_dir": "where generated data is cached (default data_cache)",
                 "split": "Adult: which of the 10 random 80/20 splits (0-9, default 0)",
                 "bias": "Adult: gender, race or both (default gender); csv: the bias column(s), COL[,COL...]",
                 "sigma2": "Colored MNIST: variance of the training colours",
                 "csv": "csv: the table (FILE)", "target": "csv: the binary target column",
                 "bias_bins": "csv: quantile bins of a numeric bias column with many values (default 4)"}
    for flag, dest, kind in DATA_FLAGS:
        metavar = {"csv": "FILE", "target": "COL", "bias": "BIAS"}.get(dest, "DIR" if kind is str else "X")
        extra = {"action": "store_true"} if kind is None else {"type": kind, "metavar": metavar}
        p.add_argument(flag, dest=dest, help=f"when a baseline is trained: {data_help[dest]}", **extra)
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


if __name__ == "__main__":
    cli.run(main)
