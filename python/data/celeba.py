"""CelebA (Liu et al. 2015) with a target attribute biased by gender: BlondHair or HeavyMakeup, bias Male.

Files, the original distribution layout under ``<data_root>/celeba/``::

    img_align_celeba/000001.jpg ...    the aligned and cropped 178 x 218 JPEGs
    list_attr_celeba.txt               line 1: image count; line 2: the 40 attribute names;
                                       then ``000001.jpg  -1  1  1 -1 ...`` (40 values, 1 or -1)
    list_eval_partition.txt            ``000001.jpg 0`` with 0 = train, 1 = val, 2 = test

Splits (DESIGN §4 reports on "the validation set"): ``train`` = partition 0; ``test`` = partition 1 (CelebA's
validation set, where the paper reports unbiased and bias-conflicting accuracy); ``val`` = partition 2 (CelebA's
test set, used here only to monitor training). All three keep CelebA's natural correlation of target and gender.

Images: centre-cropped to a square (178 x 178 for the aligned images), resized to ``image_size`` (bilinear,
antialiased; JPEG decoding already downscaled by PIL's draft mode) and held in memory as uint8 ``(n, 3,
image_size, image_size)`` on the CPU: ``n * 3 * image_size^2`` bytes, i.e. for all 202,599 images 2.5 GB at 64 px,
10 GB at 128 px and 30 GB at 224 px. Each minibatch is scaled to [0, 1] and normalised with the ImageNet mean/std
into float32 on the device by the bundle's ``to_model_input`` (:func:`imagenet_batch`); only minibatches reach the
device. Use ``max_images`` (a seeded random subset of the listed images, every partition in proportion) and/or a
small ``image_size`` to fit. Decoding takes about 0.6 ms per image
at 64 px on one core (about 2 minutes for all of CelebA), ~10 ms at 224 px.

y: the target attribute (1 = present); bias ``(n, 1)``: Male (1 = male). Metrics (``extra_metrics``):
``unbiased_accuracy``, the mean of the accuracies of the four (target, Male) groups, and
``bias_conflicting_accuracy``, the mean over the two bias-conflicting groups: those whose training count falls below
what independence of target and gender would give (for BlondHair: blond men and non-blond women; for HeavyMakeup:
made-up men and women without makeup), found from the train split's 2 x 2 counts. Also ``accuracy_y{t}_male{b}``
per group. A group absent from a split is left out of the means (and its accuracy is NaN).

Listed images missing from ``img_align_celeba/`` and images PIL cannot decode are skipped and counted in the log
(an error if none is left); a malformed list line is a ValueError naming the file and line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..flags import Flag, Setting
from ..metrics import predicted_classes
from ..models import ModelSpec, resnet_features
from .base import SPLITS, DataBundle, ExtraMetrics, Split, Tally, log_report, split_sizes
from .images import byte_table, bytes_to_float
from .spec import DatasetSpec

if TYPE_CHECKING:
    from ..config import TrainConfig

logger = logging.getLogger(__name__)

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
N_ATTRIBUTES = 40
BIAS_ATTRIBUTE = "Male"
PARTITIONS = {"train": 0, "test": 1, "val": 2}  # our split -> CelebA's partition id (1 = its validation set)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = (
    f"<data_root>/celeba/{IMAGE_DIR}/*.jpg, <data_root>/celeba/{ATTR_FILE} and <data_root>/celeba/{PARTITION_FILE} "
    "(the original CelebA distribution files)"
)


# ----------------------------------------------------------------------------------------------------------------------
# Images (shared with the IMDB loader)


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading CelebA/IMDB images needs Pillow (pip install pillow)") from None
    return Image


def decode_image(path: Path, image_size: int) -> np.ndarray:
    """One image file -> ``(image_size, image_size, 3)`` uint8 RGB: centre square crop, bilinear resize.

    Raises OSError (PIL's UnidentifiedImageError included) or ValueError when the file cannot be decoded.
    """
    image_cls = _pil()
    with image_cls.open(path) as img:
        img.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale, still >= image_size
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
        img = img.crop(box).resize((image_size, image_size), image_cls.Resampling.BILINEAR)
        return np.array(img, dtype=np.uint8)


IMAGENET_TABLE = byte_table(IMAGENET_MEAN, IMAGENET_STD)  # (3, 256): byte v of channel c -> (v/255 - mean) / std


def imagenet_batch(inputs: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor]:
    """``DataBundle.to_model_input`` of CelebA and IMDB: ``(images (b, 3, S, S) uint8,)`` -> ``(images (b, 3, S, S)
    float32,)`` on ``device``, ``(x / 255 - mean) / std`` with ImageNet's mean/std (bitwise as the old up-front
    conversion: :mod:`python.data.images`)."""
    (images,) = inputs
    return (bytes_to_float(images.to(device), IMAGENET_TABLE),)


def read_images(paths: Sequence[Path], image_size: int, tally: Tally) -> tuple[torch.Tensor, np.ndarray]:
    """Reads ``paths`` into uint8 ``(m, 3, S, S)`` (see :func:`decode_image`; :func:`imagenet_batch` normalises a
    minibatch of them for the model).

    Missing and undecodable files are skipped and counted in ``tally`` (examples name the file). Returns the
    images and the indices ``(m,)`` into ``paths`` of those read. Memory: twice the result while reading.
    """
    present = []
    for i, path in enumerate(paths):
        if path.is_file():
            present.append(i)
        else:
            tally.add("listed images skipped: file missing", str(path))
    raw = torch.empty((len(present), image_size, image_size, 3), dtype=torch.uint8)
    kept = []
    for i in present:
        try:
            raw[len(kept)] = torch.from_numpy(decode_image(paths[i], image_size))
        except (OSError, ValueError, SyntaxError) as e:  # PIL raises SyntaxError for some corrupt headers
            tally.add("images skipped: cannot be decoded", f"{paths[i]} ({type(e).__name__}: {e})")
            continue
        kept.append(i)
    return raw[:len(kept)].permute(0, 3, 1, 2).contiguous(), np.asarray(kept, dtype=np.int64)


def check_image_args(image_size: int, max_images: int | None) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (pixels per side), got {image_size!r}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")


def image_dataset_folders(data_root: str | Path | None, name: str, image_dir: str, layout: str) -> tuple[Path, Path]:
    """``(data_root/<name lowercased>, its image folder)`` of an image dataset that cannot ship with the package;
    FileNotFoundError naming the expected ``layout`` when either is missing."""
    if data_root is None:
        raise FileNotFoundError(f"{name} cannot ship with this package: pass --data-root, a folder holding {layout}")
    folder = Path(data_root) / name.lower()
    images = folder / image_dir
    if not images.is_dir():
        raise FileNotFoundError(f"{name}: folder {images} not found; expected {layout}")
    return folder, images


def subsample(n: int, max_images: int | None, seed: int | tuple[int, ...]) -> np.ndarray:
    """Ascending indices of at most ``max_images`` of ``n`` records (all of them when ``max_images`` is None or not
    below ``n``): a draw without replacement by ``np.random.default_rng(seed)``. CelebA passes its ``seed``, IMDB
    ``(seed, 0x5B)`` (a stream apart from its split draw); the pair keeps each loader's subsets as they were."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))


# ----------------------------------------------------------------------------------------------------------------------
# List files


def _read_text(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"CelebA: {path} not found; expected {LAYOUT}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path} line {line}: not UTF-8 text: {e.reason}") from e


def read_attributes(path: str | Path) -> tuple[tuple[str, ...], list[str], np.ndarray]:
    """``list_attr_celeba.txt`` -> (40 attribute names, file names, values ``(n, 40)`` int8 of 0/1).

    ValueError naming the file and line: a count line that is not an integer or disagrees with the records, a
    names line without 40 names, a record without a file name and 40 values, a value other than 1/-1, a repeated
    file name. Blank lines are skipped.
    """
    path = Path(path)
    lines = _read_text(path)
    if len(lines) < 2:
        raise ValueError(f"{path}: {len(lines)} line(s); expected a count line, a names line and the records")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ValueError(f"{path} line 1: {lines[0].strip()!r} is not the image count") from None
    names = tuple(lines[1].split())
    if len(names) != N_ATTRIBUTES:
        raise ValueError(f"{path} line 2: {len(names)} attribute names, expected {N_ATTRIBUTES}")
    files, rows, seen = [], [], set()
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != N_ATTRIBUTES + 1:
            raise ValueError(f"{path} line {number}: {len(fields)} fields, expected a file name and {N_ATTRIBUTES} "
                             "values")
        if any(v not in ("1", "-1") for v in fields[1:]):
            bad = next(v for v in fields[1:] if v not in ("1", "-1"))
            raise ValueError(f"{path} line {number}: attribute value {bad!r} is not 1 or -1")
        if fields[0] in seen:
            raise ValueError(f"{path} line {number}: {fields[0]} listed twice")
        seen.add(fields[0])
        files.append(fields[0])
        rows.append([v == "1" for v in fields[1:]])
    if count != len(files):
        raise ValueError(f"{path} line 1: the count says {count} images, the file lists {len(files)}")
    return names, files, np.asarray(rows, dtype=np.int8).reshape(-1, N_ATTRIBUTES)


def read_partition(path: str | Path) -> dict[str, int]:
    """``list_eval_partition.txt`` -> {file name: 0 | 1 | 2}; ValueError naming the file and line when a line is
    not ``name 0|1|2`` or repeats a name. Blank lines are skipped."""
    path = Path(path)
    out: dict[str, int] = {}
    for number, line in enumerate(_read_text(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{path} line {number}: {line.strip()!r} is not '<file name> 0|1|2'")
        if fields[0] in out:
            raise ValueError(f"{path} line {number}: {fields[0]} listed twice")
        out[fields[0]] = int(fields[1])
    return out


def attribute_index(names: Sequence[str], wanted: str, path: Path) -> int:
    """Index of ``wanted`` in ``names``, matched ignoring case and underscores (``BlondHair`` = ``Blond_Hair``)."""
    key = wanted.replace("_", "").lower()
    for i, name in enumerate(names):
        if name.replace("_", "").lower() == key:
            return i
    raise ValueError(f"CelebA: attribute {wanted!r} not in {path} (attributes: {', '.join(names)})")


# ----------------------------------------------------------------------------------------------------------------------
# Metrics


def conflicting_groups(y: torch.Tensor, bias: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two bias-conflicting ``(target, bias)`` groups of binary ``y (n,)`` and ``bias (n,)``: those whose count
    is below the count expected if target and bias were independent (the 2 x 2 table's odds ratio < 1 gives the
    diagonal, > 1 the anti-diagonal). With no correlation at all (odds ratio 1), the groups where target != bias."""
    counts = torch.zeros(2, 2, dtype=torch.float64)
    counts.index_put_((y.long().cpu(), bias.long().cpu()), torch.ones(len(y), dtype=torch.float64), accumulate=True)
    cross = float(counts[0, 0] * counts[1, 1] - counts[0, 1] * counts[1, 0])
    return ((0, 0), (1, 1)) if cross < 0 else ((0, 1), (1, 0))


def group_accuracies(predicted: torch.Tensor, y: torch.Tensor, bias: torch.Tensor,
                     conflicting: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Per-group accuracies and their means, from ``predicted``, ``y`` and ``bias`` (all ``(n,)``, 0/1).

    Returns ``accuracy_y{t}_male{b}`` for the four groups (NaN for an empty group), ``unbiased_accuracy`` (mean
    over the non-empty groups) and ``bias_conflicting_accuracy`` (mean over the non-empty ``conflicting`` groups;
    NaN when both are empty).
    """
    predicted, y, bias = predicted.cpu().long(), y.cpu().long(), bias.cpu().long()
    acc: dict[tuple[int, int], float] = {}
    for t in (0, 1):
        for b in (0, 1):
            members = (y == t) & (bias == b)
            acc[(t, b)] = float((predicted[members] == t).double().mean()) if members.any() else math.nan
    present = [v for v in acc.values() if not math.isnan(v)]
    conflicting_present = [acc[g] for g in conflicting if not math.isnan(acc[g])]
    out = {f"accuracy_y{t}_male{b}": v for (t, b), v in acc.items()}
    out["unbiased_accuracy"] = sum(present) / len(present) if present else math.nan
    out["bias_conflicting_accuracy"] = (sum(conflicting_present) / len(conflicting_present)
                                        if conflicting_present else math.nan)
    return out


def celeba_metrics(conflicting: Sequence[tuple[int, int]]) -> ExtraMetrics:
    """``extra_metrics`` for :class:`DataBundle`: :func:`group_accuracies` of the classes predicted by the split's
    target logits ``logits[0] (n,)``."""

    def metrics(logits: tuple[torch.Tensor, ...], split: Split) -> dict[str, float]:
        return group_accuracies(predicted_classes(logits[0]), split.y, split.bias[:, 0], conflicting)

    return metrics


# ----------------------------------------------------------------------------------------------------------------------
# Public loader


def _records(folder: Path, target: str, tally: Tally) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, str]:
    """File names, partition ids, targets and Male values ``(n,)`` of the records in both lists; the target's name."""
    attr_path, part_path = folder / ATTR_FILE, folder / PARTITION_FILE
    names, files, values = read_attributes(attr_path)
    partition = read_partition(part_path)
    t, b = attribute_index(names, target, attr_path), attribute_index(names, BIAS_ATTRIBUTE, attr_path)
    if t == b:
        raise ValueError(f"CelebA: the target cannot be the bias attribute {BIAS_ATTRIBUTE!r}")
    keep = [i for i, f in enumerate(files) if f in partition]
    for i in (i for i, f in enumerate(files) if f not in partition):
        tally.add(f"images skipped: in {ATTR_FILE} but not in {PARTITION_FILE}", files[i])
    extra = len(partition.keys() - set(files))
    if extra:
        example = next(iter(partition.keys() - set(files)))
        tally.add(f"{PARTITION_FILE} entries without attributes (ignored)", example, extra)
    kept = [files[i] for i in keep]
    parts = np.asarray([partition[f] for f in kept], dtype=np.int64)
    return kept, parts, values[keep, t].astype(np.int64), values[keep, b].astype(np.int64), names[t]


def _describe(name: str, split: Split, target: str) -> str:
    y, male = split.y, split.bias[:, 0]
    cells = ", ".join(f"{target}={t}/male={b}: {int(((y == t) & (male == b)).sum())}" for t in (0, 1) for b in (0, 1))
    return f"{name}: {len(split)} images ({cells})"


def load_celeba(
    data_root: str | Path | None,
    *,
    target: str = "Blond_Hair",
    image_size: int = 64,
    max_images: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Loads CelebA from ``<data_root>/celeba/`` (module docstring): ``target`` vs the bias Male.

    target: an attribute of list_attr_celeba.txt, spelled either way (``Blond_Hair``/``BlondHair``,
    ``Heavy_Makeup``/``HeavyMakeup``; the paper's two). image_size: side of the square images. max_images: read at
    most this many images, a random subset (``seed``) of the listed ones. Returns a DataBundle with inputs ``(images
    (n, 3, S, S) uint8,)`` (normalised per minibatch by its ``to_model_input``, :func:`imagenet_batch`), ``y (n,)``
    int64 0/1 and ``bias (n, 1)`` int64 Male 0/1, and ``extra_metrics`` giving ``unbiased_accuracy`` and
    ``bias_conflicting_accuracy``.

    Raises FileNotFoundError (a missing file or folder, or not one listed image found), ValueError (a malformed
    list line, naming the file and line; an unknown attribute; bad arguments), ImportError (no Pillow).
    """
    check_image_args(image_size, max_images)
    folder, image_dir = image_dataset_folders(data_root, "CelebA", IMAGE_DIR, LAYOUT)
    tally = Tally()
    files, parts, y, male, target_name = _records(folder, target, tally)
    pick = subsample(len(files), max_images, seed)
    log = [f"{folder}: {len(files)} images listed in both {ATTR_FILE} and {PARTITION_FILE}"]
    if len(pick) < len(files):
        log.append(f"max_images={max_images}: a random subset (seed {seed}) of {len(pick)} of the {len(files)} images")
    splits = {}
    for name, part in PARTITIONS.items():  # one split at a time: no copy of the whole image tensor
        rows = pick[parts[pick] == part]
        images, read = read_images([image_dir / files[i] for i in rows], image_size, tally)
        rows = rows[read]
        splits[name] = Split((images,), torch.from_numpy(y[rows]), torch.from_numpy(male[rows]).unsqueeze(1))
    if sum(len(s) for s in splits.values()) == 0:
        raise FileNotFoundError(f"CelebA: none of the {len(pick)} listed images could be read from {image_dir}; "
                                f"expected {LAYOUT}. {' '.join(tally.lines())}")
    empty = [f"{name} (partition {PARTITIONS[name]})" for name, split in splits.items() if len(split) == 0]
    if empty:
        raise ValueError(f"CelebA: no image left in split(s) {', '.join(empty)} of {folder}"
                         + (f" with max_images={max_images}" if max_images is not None else ""))
    conflicting = conflicting_groups(splits["train"].y, splits["train"].bias[:, 0])
    log += tally.lines()
    log += [_describe(name, splits[name], target_name) for name in SPLITS]
    log.append(f"splits: train = partition 0, val = partition 2 (CelebA's test set), test = partition 1 (CelebA's "
               f"validation set); bias-conflicting groups ({target_name}, Male) from train's counts: {conflicting}")
    log_report(log, logger)
    sizes = split_sizes(splits)
    return DataBundle(
        name="celeba",
        data_source="real",
        description=f"CelebA ({folder}): {target_name} vs {BIAS_ATTRIBUTE}, {image_size}x{image_size} images; "
                    f"train/val/test {sizes} (test = CelebA's validation set)",
        splits=splits,
        n_classes=2,
        bias_classes=(2,),
        bias_names=(BIAS_ATTRIBUTE.lower(),),
        tolerance=0,
        test_is_bias_free=False,
        log=log,
        extra_metrics=celeba_metrics(conflicting),
        to_model_input=imagenet_batch,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Registration (python/data/registry.py)


def _check_image_size(config: TrainConfig) -> None:
    if isinstance(config.image_size, bool) or not isinstance(config.image_size, int) or config.image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (CelebA, IMDB), got {config.image_size!r}")


def _check_max_images(config: TrainConfig) -> None:
    if config.max_images is not None and (not isinstance(config.max_images, int) or config.max_images < 1):
        raise ValueError(f"max_images must be a positive int or None, got {config.max_images!r}")


def _load(config: TrainConfig) -> DataBundle:
    return load_celeba(config.data_root, target=config.target or "Blond_Hair", image_size=config.image_size,
                       max_images=config.max_images, seed=config.split)


# the settings of a ResNet-18 on face images (CelebA, IMDB); --split is the seed of the --max-images subset
IMAGE_SETTINGS = (
    Setting("image_size", int, 64, Flag("CelebA, IMDB: images are resized to this many pixels a side (default 64)"),
            check=_check_image_size),
    Setting("max_images", int | None, None,
            Flag("CelebA, IMDB: use a seeded random subset of this many images (default all)"),
            check=_check_max_images),
    Setting("resnet_weights", str | None, None, Flag(
        "CelebA, IMDB: local torchvision-format ImageNet ResNet-18 state dict (default: random init)",
        metavar="FILE.pth")),
    Setting("split", int, 0, Flag("")),
)
SPEC = DatasetSpec(
    name="celeba",
    data_root="DIR/celeba/img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt (required)",
    summary="CelebA under --data-root",
    load=_load,
    model=ModelSpec(branch=64, target=(64,), bias=(64,), estimator=(64, 64, 32, 32)),
    features=resnet_features,
    defaults={"lambda_": 1.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1,
              "target": "Blond_Hair"},
    quick_train_rows=1024,
    settings=(Setting("target", str | None, None, Flag("CelebA: target attribute, e.g. Blond_Hair (default) or "
                                                        "Heavy_Makeup")), *IMAGE_SETTINGS),
)
