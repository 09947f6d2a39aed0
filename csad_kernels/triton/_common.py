"""Helpers shared by the Triton kernels: Triton device functions and launcher utilities.

Every kernel computes in float32. Launchers upcast float16/bfloat16 (and float64: the Triton
backend computes float64 inputs in float32 too, and returns float64) and cast results back to the
input dtype.

Precision of the GEMM-like ``tl.dot`` calls (every kernel takes it as the constexpr ``PRECISION``), one
setting for the whole backend: ``"tf32x3"`` (default: tensor cores, three tf32 products per dot, about
float32 accuracy), ``"ieee"`` (exact float32 FMA, no tensor cores), ``"tf32"`` (one tf32 product:
fastest, ~1e-3 relative error; opt-in). Set it with the environment variable ``CSAD_TRITON_PRECISION``
(read at each launch), :func:`set_precision`, or the :func:`precision` context manager. The CPU
interpreter computes every mode as exact float32.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import triton
import triton.language as tl

NORM_EPS = 1e-12
# finfo(float32).tiny: the clamp of reference.safe_log for float32.
TINY = 1.1754943508222875e-38
# The product-form RWR keeps factors until c^(2^k) / (1 - c) <= this.
PRODUCT_FORM_TOLERANCE = 1e-8


PRECISIONS = ("tf32x3", "ieee", "tf32")
PRECISION_ENV = "CSAD_TRITON_PRECISION"
_precision: str | None = None  # set_precision's value; None: the environment variable, else "tf32x3"


def _checked_precision(mode: str, source: str) -> str:
    if mode not in PRECISIONS:
        raise ValueError(f"{source} must be one of {PRECISIONS}, got {mode!r}")
    return mode


def dot_precision() -> str:
    """The ``input_precision`` of every ``tl.dot``: set_precision's value, else $CSAD_TRITON_PRECISION, else tf32x3."""
    if _precision is not None:
        return _precision
    return _checked_precision(os.environ.get(PRECISION_ENV, "tf32x3"), PRECISION_ENV)


def set_precision(mode: str | None) -> None:
    """Sets the dot precision of the Triton backend (``None``: back to the environment variable / default)."""
    global _precision
    _precision = None if mode is None else _checked_precision(mode, "precision")


@contextlib.contextmanager
def precision(mode: str) -> Iterator[None]:
    """Context manager: the Triton kernels launched inside use dot precision ``mode``."""
    previous = _precision
    set_precision(mode)
    try:
        yield
    finally:
        set_precision(previous)


def fma_dots() -> bool:
    """Whether the dots run as float32 FMAs on a GPU (``ieee``): each thread then holds more of a tile in
    registers than with tensor cores, so the launchers halve their biggest tiles to stay free of spills."""
    return dot_precision() == "ieee" and not interpreted()


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def num_factors(c: float) -> int:
    """Factors ``k`` of ``(I - A)^-1 = (I + A)(I + A^2)...(I + A^(2^(k-1)))``, ``A = cE`` (k = 5 at c = 0.5)."""
    k = 1
    while c ** (2**k) / (1.0 - c) > PRODUCT_FORM_TOLERANCE:
        k += 1
    return k


def block(n: int, minimum: int = 16) -> int:
    """Power-of-two block covering ``n`` (at least 16: tl.dot needs dims >= 16)."""
    return max(minimum, triton.next_power_of_2(n))


@triton.jit
def log1p_small(z):
    """``log(1 + z)`` for ``z`` in [0, 1], accurate also for tiny ``z`` (Goldberg's trick)."""
    w = 1.0 + z
    d = w - 1.0
    return tl.where(d == 0.0, z, tl.log(w) * (z / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def softplus(x):
    """``log(1 + e^x)`` = ``max(x, 0) + log1p(e^-|x|)``: exact for any finite x, like reference.softplus."""
    return tl.maximum(x, 0.0) + log1p_small(tl.exp(-tl.abs(x)))


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def normalize_rows(x, EPS: tl.constexpr):
    """``x / max(|x|, eps)`` row-wise (F.normalize); returns ``(xn, denominator)``."""
    den = tl.maximum(tl.sqrt(tl.sum(x * x, axis=1)), EPS)
    return x / den[:, None], den


@triton.jit
def normalize_rows_backward(xn, den, dxn, EPS: tl.constexpr):
    """Gradient through ``xn = x / max(|x|, eps)`` given ``dxn``: rows with ``|x| <= eps`` get ``dxn / eps``."""
    proj = tl.sum(xn * dxn, axis=1)
    return tl.where((den > EPS)[:, None], (dxn - xn * proj[:, None]) / den[:, None], dxn / EPS)


@triton.jit
def safe_log(p):
    return tl.log(tl.maximum(p, 1.1754943508222875e-38))


@triton.jit
def tile_mask(rows, cols, n_rows, n_cols):
    """Which entries of the ``rows x cols`` tile lie inside an ``n_rows x n_cols`` matrix."""
    return (rows < n_rows)[:, None] & (cols < n_cols)[None, :]


@triton.jit
def tile_ptrs(ptr, rows, cols, s_row, s_col):
    """Pointers to the ``rows x cols`` tile of the matrix at ``ptr`` (its row and column strides)."""
    return ptr + rows[:, None] * s_row + cols[None, :] * s_col


@triton.jit
def load_tile(ptr, rows, cols, n_rows, n_cols, s_row, s_col):
    """The ``rows x cols`` tile of the ``n_rows x n_cols`` matrix at ``ptr``, 0 outside it."""
    return tl.load(tile_ptrs(ptr, rows, cols, s_row, s_col), mask=tile_mask(rows, cols, n_rows, n_cols), other=0.0)


@triton.jit
def store_tile(ptr, value, rows, cols, n_rows, n_cols, s_row, s_col):
    """Writes the entries of ``value`` (a ``rows x cols`` tile) that lie inside the matrix at ``ptr``."""
    tl.store(tile_ptrs(ptr, rows, cols, s_row, s_col), value, mask=tile_mask(rows, cols, n_rows, n_cols))
