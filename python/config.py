"""Run configuration: defaults per dataset, then a YAML/JSON file, then command-line flags (later wins)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from csad_kernels import BACKENDS

from .data.registry import DATASETS as DATASET_SPECS
from .flags import FLAG, Setting, flag_field
from .methods import METHODS as METHOD_CLASSES

METHODS = tuple(METHOD_CLASSES)
# methods whose estimator can be made conditional on the target (--conditional)
ESTIMATOR_METHODS = tuple(name for name, method in METHOD_CLASSES.items() if method.cross_sample_estimator)
DATASETS = tuple(DATASET_SPECS)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(spec.defaults) for name, spec in DATASET_SPECS.items()}


def _dataset_help() -> str:
    summaries = "; ".join(f"{name}: {spec.summary}" for name, spec in DATASET_SPECS.items())
    return f"dataset to train on (default mpower). {summaries}"


def _data_root_help() -> str:
    layouts = "; ".join(f"{name}: {spec.data_root}" for name, spec in DATASET_SPECS.items() if spec.data_root)
    return f"folder holding the real data. {layouts}"


def _backend_help() -> str:
    return f"csad_kernels backend of the estimator: {', '.join(('auto', *BACKENDS))} (default auto)"


def _lambda_help() -> str:
    defaults = ", ".join(f"{name} {spec.defaults['lambda_']:g}" for name, spec in DATASET_SPECS.items()
                         if "lambda_" in spec.defaults)
    return f"weight λ of the debiasing loss (default per dataset: {defaults}; see docs/results.md)"


@dataclass
class RunSettings:
    """The settings of every run, whatever the dataset (each with its flag); the datasets' own settings are
    declared by their specs (:data:`python.data.registry.DATASETS`). Epoch counts are per phase (see
    ``python.methods``)."""

    dataset: str = flag_field("mpower", _dataset_help(), choices=DATASETS)
    method: str = flag_field(
        "csad", "debiasing method (default csad); 'baseline' is vanilla training; 'oracle' is a reference ceiling, "
        "not a debiasing method: the baseline with each row's loss weighted so that the training split becomes its "
        "bias-balanced resample (the target independent of the bias, classes equally likely in each cell)",
        choices=METHODS)
    data_root: str | None = flag_field(None, _data_root_help(), metavar="DIR")
    pretrain_epochs: int = flag_field(
        15, "epochs of Algorithm 2 step 1 (F, D_y, P_y on the target loss) (mpower default 15)")
    bias_epochs: int = flag_field(
        3, "most epochs of step 2 (bias branch on frozen F); it ends earlier, once its mean epoch loss has improved "
        "by less than 1%% over the last 2 epochs (mpower default 20, others per dataset)")
    estimator_epochs: int = flag_field(3, "epochs of step 3 (M maximising I) (default 3)")
    epochs: int = flag_field(
        15, "epochs of the debiasing phase (step 4) (mpower default 15); the baseline trains pretrain-epochs + "
        "epochs epochs")
    batch_size: int = flag_field(
        128, "minibatch size, also the number of samples the cross-sample estimator compares (default 128); under "
        "torchrun the global minibatch, split over the processes (at least 2 per process)")
    lr: float = flag_field(1e-3, "Adam learning rate of every network (default 1e-3)")
    estimator_lr: float | None = flag_field(
        None, "Adam learning rate of the estimator M (csad and variants) and of MINE (mi_label) (default: --lr; the "
        "authors' code uses one rate for all, 5e-4 pretraining, 5e-5 adversarial)")
    weight_decay: float = flag_field(0.0, "Adam weight decay of every network (default 0; the authors' code uses 5e-4)")
    lambda_: float = flag_field(1.0, _lambda_help(), name="--lambda")
    k_inner: int = flag_field(10, "K: steps of the bias branch and of M per minibatch (default 10)")
    alpha: float = flag_field(1.0, "initial scale alpha of the estimator's similarity (default 1)")
    tau: float = flag_field(10.0, "initial temperatures tau_y, tau_b of the estimator's graphs (default 10)")
    c: float = flag_field(0.5, "restart constant c of the random walk, in (0, 1) (default 0.5)")
    balanced_batches: bool = flag_field(
        True, "draw minibatches balanced over the target classes (default on)", switch="both")
    backend: str = flag_field("auto", _backend_help())
    device: str = flag_field("auto", "auto, cpu, cuda or cuda:N (default auto: cuda when available)")
    seed: int = flag_field(0, "seed of initialisation and minibatch order (default 0)")
    out: str | None = flag_field(
        None, "run folder (default runs/DATASET_METHOD_seedSEED; METHOD_conditional with --conditional, _quick added "
        "with --quick)", metavar="DIR")
    cache_dir: str = flag_field(
        "data_cache", "where generated data (the simulated cohort) is cached (default data_cache)", metavar="DIR")
    quick: bool = flag_field(
        False, "a complete run with every phase on a small cohort and few epochs (< 2 min on 2 CPU cores)",
        switch="on")
    baseline: bool = flag_field(True, "do not train the vanilla baseline beside the method", switch="off")
    local_estimator: bool = flag_field(
        False, "under torchrun, estimate I (csad and variants; MINE of mi_label) on each process's shard of the "
        "minibatch instead of all-gathering u, v and the bias labels of the global minibatch (less communication, "
        "smaller Ω); no effect in a single process", switch="on")
    conditional: bool = flag_field(
        False, "csad and variants: count only pairs of samples with the same target label, on both sides of the "
        "estimator (independence of h^y and h^b within each target class, not overall: where the target depends on "
        "the bias in training, the unconditional estimator also removes target evidence)", switch="on")

    def to_dict(self) -> dict[str, Any]:
        return {_key(f.name): getattr(self, f.name) for f in fields(self)}

    @property
    def run_dir(self) -> Path:
        quick = "_quick" if self.quick else ""  # a quick run never lands in (or resumes) the full run's folder
        method = self.method + ("_conditional" if self.conditional else "")
        return Path(self.out) if self.out else Path("runs") / f"{self.dataset}_{method}_seed{self.seed}{quick}"


def dataset_settings() -> dict[str, Setting]:
    """Every dataset's settings by name, one :class:`Setting` per name (see :func:`merged_setting`)."""
    declared: dict[str, list[Setting]] = {}
    for spec in DATASET_SPECS.values():
        for setting in spec.settings:
            declared.setdefault(setting.name, []).append(setting)
    return {name: merged_setting(declarations) for name, declarations in declared.items()}


def merged_setting(declarations: list[Setting]) -> Setting:
    """One setting declared by several datasets (in registry order), with the same kind and default: the first
    declaration, its flag's help joining their help texts, each once."""
    first = declarations[0]
    for other in declarations[1:]:
        if (other.kind, other.default) != (first.kind, first.default):
            raise TypeError(f"datasets declare setting {first.name!r} with different types or defaults: "
                            f"{first.kind} = {first.default!r} and {other.kind} = {other.default!r}")
    helps = [text for text in dict.fromkeys(d.flag.help for d in declarations) if text]
    return dataclasses.replace(first, flag=dataclasses.replace(first.flag, help="; ".join(helps)))


def setting_checks() -> list[Callable[[Any], None]]:
    """The checks of every declaration of every dataset setting, each once."""
    checks = [s.check for spec in DATASET_SPECS.values() for s in spec.settings if s.check is not None]
    return list(dict.fromkeys(checks))


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(s.name, s.kind, dataclasses.field(default=s.default, metadata={FLAG: s.flag}))
     for s in dataset_settings().values()],
    bases=(RunSettings,),
)
TrainConfig.__module__ = __name__  # where pickle (torchrun's broadcast of the config) finds it
TrainConfig.__doc__ = """Everything that decides a run: :class:`RunSettings` and the settings the datasets declare."""


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
    if config.device not in ("auto", "cpu", "cuda") and not str(config.device).startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    for check in setting_checks():
        check(config)
    spec = DATASET_SPECS[config.dataset]
    if spec.check is not None:
        spec.check(config)


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


def changed_settings(saved: TrainConfig, asked: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, asked value)}`` for each setting where ``asked`` differs from ``saved``, the settings a
    resume may change (:data:`RESUMABLE_OVERRIDES`) aside."""
    return {_key(f.name): (getattr(saved, f.name), getattr(asked, f.name)) for f in fields(asked)
            if f.name not in RESUMABLE_OVERRIDES and getattr(saved, f.name) != getattr(asked, f.name)}


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
