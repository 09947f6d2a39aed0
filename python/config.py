"""Run configuration: defaults per dataset, then a YAML/JSON file, then command-line flags (later wins)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("mpower", "adult", "colored_mnist", "celeba", "imdb", "csv")
METHODS = ("baseline", "csad", "csad_ms", "csad_content", "csad_struc", "ad_jsd", "grad_reverse", "mi_label",
           "blind_eye", "oracle")
# methods whose estimator can be made conditional on the target (--conditional)
ESTIMATOR_METHODS = ("csad", "csad_ms", "csad_content", "csad_struc", "ad_jsd")


@dataclass
class TrainConfig:
    """Everything that decides a run. Epoch counts are per phase (see ``python.methods``)."""

    dataset: str = "mpower"
    method: str = "csad"
    data_root: str | None = None
    pretrain_epochs: int = 15
    bias_epochs: int = 3
    estimator_epochs: int = 3
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    estimator_lr: float | None = None
    weight_decay: float = 0.0
    lambda_: float = 1.0
    k_inner: int = 10
    alpha: float = 1.0
    tau: float = 10.0
    c: float = 0.5
    balanced_batches: bool = True
    backend: str = "auto"
    device: str = "auto"
    seed: int = 0
    split: int = 0
    bias: str | None = "gender"
    sigma2: float = 0.020
    target: str | None = None
    train_on: str = "EB1"
    image_size: int = 64
    max_images: int | None = None
    clean_ids: str | None = None
    resnet_weights: str | None = None
    csv: str | None = None
    bias_bins: int = 4
    download: bool = False
    out: str | None = None
    cache_dir: str = "data_cache"
    quick: bool = False
    baseline: bool = True
    local_estimator: bool = False
    conditional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {_key(f.name): getattr(self, f.name) for f in fields(self)}

    @property
    def run_dir(self) -> Path:
        quick = "_quick" if self.quick else ""  # a quick run never lands in (or resumes) the full run's folder
        method = self.method + ("_conditional" if self.conditional else "")
        return Path(self.out) if self.out else Path("runs") / f"{self.dataset}_{method}_seed{self.seed}{quick}"


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mpower": {"lambda_": 1.0, "pretrain_epochs": 15, "epochs": 15, "bias_epochs": 20, "estimator_epochs": 3},
    "adult": {"lambda_": 10.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1},
    "colored_mnist": {"lambda_": 10.0, "pretrain_epochs": 10, "epochs": 10, "bias_epochs": 2, "estimator_epochs": 2},
    "celeba": {"lambda_": 1.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1,
               "target": "Blond_Hair"},
    "imdb": {"lambda_": 1.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1},
    # your own table (python/data/csv_table.py): Adult's model and schedule; --csv, --target and --bias have no default
    "csv": {"lambda_": 10.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1, "bias": None},
}
QUICK: dict[str, Any] = {"pretrain_epochs": 2, "epochs": 2, "bias_epochs": 1, "estimator_epochs": 1}
# settings that may change when a run is resumed: they do not change what is computed (up to round-off for backend)
RESUMABLE_OVERRIDES = {"device", "backend", "resume", "out"}


def _key(name: str) -> str:
    return "lambda" if name == "lambda_" else name


def _field(key: str) -> str:
    key = key.replace("-", "_")
    return "lambda_" if key == "lambda" else key


@functools.cache
def field_types() -> dict[str, tuple[type, ...]]:
    """Field name -> the Python types its value may have, read from :class:`TrainConfig`'s annotations (``str |
    None`` -> ``(str, NoneType)``; ``float`` also takes an ``int``)."""
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        out[name] = allowed + ((int,) if float in allowed else ())
    return out


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
               type(None): "null"}


def _has_type(value: Any, kind: type) -> bool:
    if kind in (bool, int, float):  # bool is a subclass of int in Python, not a number here
        return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    return isinstance(value, kind)


def check_types(values: dict[str, Any], where: str = "") -> None:
    """ValueError naming the key when a value's type is not its field's (a bool is not an int, a string is not a
    number or a bool: ``quick: "false"`` is refused, not read as true), or a number field is not finite."""
    for name, value in values.items():
        allowed = field_types().get(name)
        if allowed is None:
            continue
        finite = not isinstance(value, float) or math.isfinite(value)
        if not (finite and any(_has_type(value, kind) for kind in allowed)):
            kinds = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in allowed if not (t is int and float in allowed)))
            raise ValueError(f"{where}{_key(name)} must be {kinds}, got {value!r} ({type(value).__name__})")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (or JSON) mapping of config keys safely; unknown keys and values of the wrong type (see
    :func:`check_types`) are an error naming them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ValueError(f"config file {path} is not valid {kind}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    known = {f.name for f in fields(TrainConfig)}
    values = {_field(str(k)): v for k, v in data.items()}
    unknown = sorted(_key(k) for k in values if k not in known)
    if unknown:
        raise ValueError(f"config file {path}: unknown keys {unknown}; known: {sorted(_key(k) for k in known)}")
    check_types(values, f"config file {path}: ")
    return values


def resolve(cli: dict[str, Any], file_values: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults ← dataset defaults ← ``--quick`` ← config file ← command line (``None`` means not given)."""
    given = {**(file_values or {}), **{k: v for k, v in cli.items() if v is not None}}
    check_types(given)
    dataset = given.get("dataset", TrainConfig.dataset)
    quick = bool(given.get("quick", False))
    values = {**DATASET_DEFAULTS.get(dataset, {}), **(QUICK if quick else {}), **given}
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Raise ValueError naming the first setting that cannot work (a value of the wrong type included)."""
    check_types(dataclasses.asdict(config))
    if config.dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {config.dataset!r}")
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")
    if config.conditional and config.method not in ESTIMATOR_METHODS:
        raise ValueError(f"conditional applies to the cross-sample estimator methods {ESTIMATOR_METHODS}, not to "
                         f"{config.method!r}")
    for name in ("pretrain_epochs", "bias_epochs", "estimator_epochs", "epochs", "k_inner"):
        value, least = getattr(config, name), 1 if name == "k_inner" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if isinstance(config.batch_size, bool) or not isinstance(config.batch_size, int) or config.batch_size < 2:
        raise ValueError(f"batch_size must be an int >= 2 (the estimator compares samples), got {config.batch_size!r}")
    for name in ("lr", "tau", "alpha"):
        if not float(getattr(config, name)) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(config, name)!r}")
    if config.estimator_lr is not None and not float(config.estimator_lr) > 0:
        raise ValueError(f"estimator_lr must be > 0, got {config.estimator_lr!r}")
    if not float(config.weight_decay) >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay!r}")
    if not float(config.lambda_) >= 0:
        raise ValueError(f"lambda must be >= 0, got {config.lambda_!r}")
    if not 0 < float(config.c) < 1:
        raise ValueError(f"c must lie in (0, 1), got {config.c!r}")
    if not 0 <= config.seed < 2**63:
        raise ValueError(f"seed must be an int in 0..2**63-1, got {config.seed!r}")
    if config.split not in range(10) or isinstance(config.split, bool):
        raise ValueError(f"split must be an int in 0..9 (Adult's 10 random 80/20 splits), got {config.split!r}")
    if config.dataset == "csv":
        missing = [flag for flag, value in (("--csv FILE", config.csv), ("--target COL", config.target),
                                            ("--bias COL[,COL...]", config.bias)) if not value]
        if missing:
            raise ValueError(f"dataset csv needs {', '.join(missing)}: the table, its binary target column and its "
                             "bias column(s)")
    elif config.bias not in ("gender", "race", "both"):
        raise ValueError(f"bias must be gender, race or both (Adult), got {config.bias!r}")
    if isinstance(config.bias_bins, bool) or not isinstance(config.bias_bins, int) or config.bias_bins < 2:
        raise ValueError(f"bias_bins must be an int >= 2 (quantile bins of a numeric bias column), got "
                         f"{config.bias_bins!r}")
    if not 0 < float(config.sigma2) <= 1:
        raise ValueError(f"sigma2 must lie in (0, 1] (Colored MNIST colour variance), got {config.sigma2!r}")
    if config.train_on not in ("EB1", "EB2"):
        raise ValueError(f"train_on must be EB1 or EB2 (IMDB), got {config.train_on!r}")
    if isinstance(config.image_size, bool) or not isinstance(config.image_size, int) or config.image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (CelebA, IMDB), got {config.image_size!r}")
    if config.max_images is not None and (not isinstance(config.max_images, int) or config.max_images < 1):
        raise ValueError(f"max_images must be a positive int or None, got {config.max_images!r}")
    if config.device not in ("auto", "cpu", "cuda") and not str(config.device).startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {config.device!r}")


def save(config: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_saved(path: Path) -> TrainConfig:
    """The config.yaml of a run folder, checked as a fresh config is (a hand-edited file included)."""
    config = TrainConfig(**read_config_file(path))
    try:
        validate(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return config


def merge_for_resume(saved: TrainConfig, cli: dict[str, Any]) -> TrainConfig:
    """The saved config with the allowed overrides; any other flag that differs from the saved run is an error."""
    changed = {}
    for key, value in cli.items():
        if value is None or key in RESUMABLE_OVERRIDES or key == "config":
            continue
        if getattr(saved, key, value) != value:
            changed[_key(key)] = (getattr(saved, key), value)
    if changed:
        detail = ", ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"--resume continues the saved run and cannot change its settings ({detail})")
    overrides = {k: cli[k] for k in ("device", "backend") if cli.get(k) is not None}
    return dataclasses.replace(saved, **overrides)
