"""Features Z with their bias and target labels: read from a features file, or F's outputs on a trained run's splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


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
    from ..config import load_saved
    from ..data import load_dataset
    from ..trainer import Trainer

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
