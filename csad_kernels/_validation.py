"""Input validation of the public API (DESIGN.md §8).

Shape, dtype and device rules are always checked. Checks that read values (finiteness,
row-stochasticity, label range) always run for the reference backend, also under ``torch.compile``
(there as run-time asserts in the graph, which raise ``RuntimeError`` with the same message), and
for fused backends on CPU tensors in eager mode; they are skipped for fused backends on a GPU, where
they would force a device synchronisation, and for fused backends while ``torch.compile`` traces.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from csad_kernels._dispatch import BACKENDS
from csad_kernels.reference import ESTIMATORS, REDUCTIONS, SIMILARITIES

ROW_SUM_TOLERANCE = 1e-3
INT64_MAX = 2**63 - 1
# Labels within ±LABEL_LIMIT have differences that fit in int64 (the Ω comparison subtracts them).
LABEL_LIMIT = 2**62 - 1


def values_checkable(backend: str, *tensors: torch.Tensor) -> bool:
    """Whether value checks (which read tensor contents) run for this call."""
    if torch.compiler.is_compiling():
        return backend == "reference"
    return backend == "reference" or all(t.device.type == "cpu" for t in tensors)


def _assert_in_graph(condition: torch.Tensor, message: str) -> bool:
    """Under ``torch.compile``: records a run-time assert of ``condition`` and returns True (checked);
    in eager mode returns False and the caller checks the values itself (with a more detailed message)."""
    if not torch.compiler.is_compiling():
        return False
    torch._assert_async(condition, message)
    return True


def floating_tensor(name: str, t: object, min_dim: int) -> torch.Tensor:
    """Checks ``t`` is a floating tensor with at least ``min_dim`` dims and no empty dim."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    return t


def same_dtype(**tensors: torch.Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name}: {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{' and '.join(dtypes)} must have the same dtype, got {listed}")


def same_device(**tensors: torch.Tensor | None) -> torch.device:
    devices = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor)}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name}: {device}" for name, device in devices.items())
        raise ValueError(f"all tensors must be on one device, got {listed}")
    return next(iter(devices.values()))


def leading_dims_match(name_a: str, a: Sequence[int], name_b: str, b: Sequence[int]) -> None:
    if tuple(a) != tuple(b):
        raise ValueError(f"{name_a} and {name_b} must share their leading (batch) dims, got {tuple(a)} and {tuple(b)}")


def at_least_two_samples(name: str, n: int) -> None:
    if n < 2:
        raise ValueError(f"{name} must hold N >= 2 samples (cross-sample pairs need two), got N = {n}")


def finite(name: str, t: torch.Tensor) -> None:
    t = t.detach()
    if _assert_in_graph(torch.isfinite(t).all(), f"{name} must be finite, got NaN or infinite entries"):
        return
    if t.dim() == 0:
        if not math.isfinite(float(t)):
            raise ValueError(f"{name} must be finite, got {float(t)}")
        return
    # A sum is finite only if every entry is (NaN and inf propagate); a non-finite sum may also
    # be an overflow, so only then are the entries checked one by one.
    if math.isfinite(float(t.sum())):
        return
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN or infinite entries")


def scalar(name: str, value: object, device: torch.device) -> torch.Tensor | float:
    """A learnable scalar: a real number or a 0-d floating tensor on ``device``."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:
            raise ValueError(f"{name} must be a 0-d tensor or a number, got shape {tuple(value.shape)}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
        if value.device != device:
            raise ValueError(f"{name} must be on the inputs' device {device}, got {value.device}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or a 0-d floating tensor, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def restart_probability(c: object) -> float:
    if isinstance(c, bool) or not isinstance(c, numbers.Real):
        raise TypeError(f"c must be a float in (0, 1), got {type(c).__name__}")
    if not 0.0 < float(c) < 1.0:
        raise ValueError(f"c must lie strictly between 0 and 1, got {c}")
    return float(c)


def choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def estimator_options(estimator: object, reduction: object) -> None:
    choice("estimator", estimator, ESTIMATORS)
    if reduction is not None:
        choice("reduction", reduction, REDUCTIONS)


def ms_scales(
    estimator: str,
    names: tuple[str, str],
    w_pos: object,
    w_neg: object,
    defaults: tuple[object, object],
    device: torch.device,
) -> tuple[torch.Tensor | float, torch.Tensor | float | None]:
    """The ms estimator's scales ``w₊, w₋`` (> 0; ``w₋`` None means ``w₊``). cs and jsd have none:
    there the two arguments must keep their ``defaults``."""
    if estimator != "ms":
        for name, value, default in zip(names, (w_pos, w_neg), defaults, strict=True):
            if value is not default and not (isinstance(value, numbers.Real) and value == default):
                raise ValueError(f"{name} applies to estimator='ms' only; leave it at {default!r} for {estimator!r}")
        return w_pos, w_neg  # type: ignore[return-value]
    scales = []
    for name, value in zip(names, (w_pos, w_neg), strict=True):
        if value is None and name == names[1]:
            scales.append(None)
            continue
        value = scalar(name, value, device)
        if not isinstance(value, torch.Tensor) and value <= 0:
            raise ValueError(f"{name} must be > 0 for estimator='ms', got {value}")
        scales.append(value)
    return scales[0], scales[1]


def positive_scales(names: tuple[str, str], *values: object) -> None:
    """Value check of tensor ms scales: finite and > 0."""
    for name, value in zip(names, values, strict=False):
        if isinstance(value, torch.Tensor):
            finite(name, value)
            message = f"{name} must be > 0 for estimator='ms'"
            if not _assert_in_graph(value.detach() > 0, message) and not bool(value.detach() > 0):
                raise ValueError(f"{message}, got {float(value)}")


def groups_labels(groups: object, batch_shape: Sequence[int], n: int, device: torch.device) -> torch.Tensor | None:
    """Optional ``groups (..., N)`` integer labels: only pairs within one group count."""
    if groups is None:
        return None
    if not isinstance(groups, torch.Tensor):
        raise TypeError(f"groups must be an integer torch.Tensor (..., N), got {type(groups).__name__}")
    if groups.is_floating_point() or groups.is_complex():
        raise TypeError(f"groups must hold integer labels, got dtype {groups.dtype}")
    expected = (*batch_shape, n)
    if tuple(groups.shape) != expected:
        raise ValueError(f"groups must have shape {expected} (..., N), got {tuple(groups.shape)}")
    if groups.device != device:
        raise ValueError(f"groups must be on the inputs' device {device}, got {groups.device}")
    return groups.to(torch.int64)


def similarity_option(similarity: object) -> None:
    choice("similarity", similarity, SIMILARITIES)


def backend_option(backend: object) -> str:
    return choice("backend", backend, ("auto", *BACKENDS))


def tolerance_value(tolerance: object) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Integral):
        raise TypeError(f"tolerance must be a non-negative int, got {type(tolerance).__name__}")
    if not 0 <= tolerance <= INT64_MAX:
        raise ValueError(f"tolerance must be an int in [0, 2**63 - 1] (int64), got {tolerance}")
    return int(tolerance)


def pairs(
    batch_shape: Sequence[int],
    n: int,
    bias: object,
    mask: object,
    tolerance: object,
    device: torch.device,
) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    """Validates the Ω specification of ``n`` samples with leading dims ``batch_shape``.

    Returns ``(labels, mask, tolerance)`` with exactly one of labels/mask set; labels always
    carry a label axis, ``(..., N, K)`` int64.
    """
    tol = tolerance_value(tolerance)
    if (bias is None) == (mask is None):
        raise ValueError("pass exactly one of bias (labels (..., N) or (..., N, K)) and mask (boolean (..., N, N))")
    if mask is not None:
        return None, _mask(mask, batch_shape, n, tol, device), tol
    return _labels(bias, batch_shape, n, device), None, tol


def _mask(mask: object, batch_shape: Sequence[int], n: int, tolerance: int, device: torch.device) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a boolean torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool, got {mask.dtype}")
    expected = (*batch_shape, n, n)
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask must have shape {expected} (..., N, N), got {tuple(mask.shape)}")
    if tolerance != 0:
        raise ValueError("tolerance applies to bias labels only; it must be 0 when mask is given")
    if mask.device != device:
        raise ValueError(f"mask must be on the inputs' device {device}, got {mask.device}")
    return mask


def _labels(bias: object, batch_shape: Sequence[int], n: int, device: torch.device) -> torch.Tensor:
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be an integer torch.Tensor, got {type(bias).__name__}")
    if bias.is_floating_point() or bias.is_complex():
        raise TypeError(f"bias must hold integer labels, got dtype {bias.dtype}")
    single, multi = (*batch_shape, n), len(batch_shape) + 2
    if tuple(bias.shape) == single:
        labels = bias.unsqueeze(-1)
    elif bias.dim() == multi and tuple(bias.shape[:-1]) == single and bias.shape[-1] >= 1:
        labels = bias
    else:
        raise ValueError(
            f"bias must have shape {single} (..., N) or {single + ('K',)} (..., N, K), got {tuple(bias.shape)}"
        )
    if bias.device != device:
        raise ValueError(f"bias must be on the inputs' device {device}, got {bias.device}")
    return labels.to(torch.int64)


def label_range(name: str, labels: torch.Tensor) -> None:
    """Labels whose differences would overflow int64 (and so compare wrongly) are refused."""
    labels = labels.detach()
    message = f"{name} labels must lie in [-(2**62 - 1), 2**62 - 1] so that their differences fit in int64"
    inside = (labels.abs() <= LABEL_LIMIT).all() & (labels != torch.iinfo(torch.int64).min).all()
    if _assert_in_graph(inside, message):
        return
    if not bool(inside):
        raise ValueError(f"{message}; got values from {int(labels.min())} to {int(labels.max())}")


def row_stochastic(name: str, e: torch.Tensor) -> None:
    e = e.detach()
    condition = (e >= 0).all() & ((e.sum(dim=-1) - 1).abs() <= ROW_SUM_TOLERANCE).all()
    message = f"{name} must be row-stochastic: entries >= 0, rows summing to 1 within {ROW_SUM_TOLERANCE}"
    if _assert_in_graph(condition, message):
        return
    if bool((e < 0).any()):
        raise ValueError(f"{name} must be row-stochastic, but it has negative entries (min {float(e.min()):.3g})")
    deviation = float((e.sum(dim=-1) - 1).abs().max())
    if deviation > ROW_SUM_TOLERANCE:
        raise ValueError(
            f"{name} must be row-stochastic: its rows must sum to 1 within {ROW_SUM_TOLERANCE}, "
            f"but a row sum is off by {deviation:.3g}"
        )


def non_negative(name: str, t: torch.Tensor) -> None:
    t = t.detach()
    if _assert_in_graph((t >= 0).all(), f"{name} must hold probabilities (>= 0), but it has negative entries"):
        return
    if bool((t < 0).any()):
        raise ValueError(
            f"{name} must hold probabilities (>= 0), but it has negative entries (min {float(t.min()):.3g})"
        )
