"""IMDB face (IMDB-WIKI, Rothe et al. 2015) with the age-biased gender splits EB1/EB2 of Kim et al. 2019.

Files, the IMDB-WIKI distribution ``imdb_crop.tar`` unpacked under ``<data_root>/imdb/``::

    imdb_crop/00/nm0000100_rm46373120_1955-1-6_2003.jpg ...   face crops, in folders 00..99
    imdb_crop/imdb.mat   (or imdb/imdb.mat)                     MATLAB v5 struct ``imdb``, one entry per image

Fields of ``imdb`` used (1 x n each): ``dob`` (MATLAB datenum of the birth date), ``photo_taken`` (year),
``full_path`` (cell of paths relative to ``imdb_crop/``), ``gender`` (1 male, 0 female, NaN unknown),
``face_score`` (-Inf: no face found). ``second_face_score`` and the other fields are not used (the cleaned list
of Kim et al., ``clean_ids``, is the way to drop doubtful images).

Records dropped and counted, each under its first reason: invalid dob (not finite or before year 1), invalid
photo_taken, age outside 0-100, unknown gender, no face (face_score -Inf or NaN), not in ``clean_ids``; ages 30-39
belong to no split and are counted as such. Age = photo_taken - birth year, the birth year being that of
``datetime.fromordinal(int(dob)) - timedelta(days=366)`` (MATLAB datenum -> Python ordinal).

Splits, drawn from the records aged 0-29 or 40+ (``seed``): ``test`` = a random 20% of them, drawn first (the same
for EB1 and EB2, so their results compare); from the rest, EB1 = women 0-29 + men 40+ and EB2 = women 40+ + men
0-29; ``train_on`` picks one, and a random 10% of it is ``val`` (as biased as train). Images of the unused set are not
read. Images are centre-cropped to a square, resized to ``image_size`` and held as uint8 on the CPU as for CelebA
(:func:`python.data.celeba.read_images`): memory ``n * 3 * image_size^2`` bytes (12 KB per image at 64 px, 150 KB
at 224 px); each minibatch is ImageNet-normalised into float32 on the device
(:func:`python.data.celeba.imagenet_batch`); ``max_images`` caps the records (a random subset, ``seed``, taken
before the splits).

y: gender (1 = male). bias ``(n, 1)``: age in 12 bins, :data:`AGE_BIN_EDGES`: <15, 15-19, 20-24, 25-29, 30-34,
35-39, 40-44, 45-49, 50-54, 55-59, 60-64, 65+. (Kim et al. do not publish their bin edges; these are 5-year bins
clipped at both ends. The two 30-39 bins stay empty, since those ages are in no split.) Metrics
(``extra_metrics``): ``accuracy`` (the paper reports it on test, training on EB1 or EB2), the accuracy per
(gender, 0-29 / 40+) group ``accuracy_female_0-29`` ... and their mean ``unbiased_accuracy``.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..flags import Flag, Setting
from ..metrics import predicted_classes
from ..models import ModelSpec, resnet_features
from .base import SPLITS, DataBundle, Split, Tally, log_report, split_sizes
from .celeba import IMAGE_SETTINGS, check_image_args, image_dataset_folders, imagenet_batch, read_images, subsample
from .spec import DatasetSpec

if TYPE_CHECKING:
    from ..config import TrainConfig

logger = logging.getLogger(__name__)

IMAGE_DIR = "imdb_crop"
MAT_FILE = "imdb.mat"
STRUCT = "imdb"
FIELDS = ("dob", "photo_taken", "full_path", "gender", "face_score")
AGE_BIN_EDGES = (15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65)  # bin k holds edges[k-1] <= age < edges[k]
N_AGE_BINS = len(AGE_BIN_EDGES) + 1
YOUNG_MAX, OLD_MIN = 29, 40  # the age groups 0-29 and 40+
VALID_AGE = (0, 100)
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
TRAIN_SETS = ("EB1", "EB2")
SUBSET_STREAM = 0x5B  # second seed word of the max_images draw (the split draw uses 0x1DB)
MATLAB_ORDINAL_OFFSET = 366  # MATLAB datenum - Python date ordinal
_UNIX_EPOCH_DATENUM = 719529  # MATLAB datenum of 1970-01-01
_MAX_ORDINAL = 3652059  # Python's date.max
LAYOUT = (
    f"<data_root>/imdb/{IMAGE_DIR}/NN/*.jpg and <data_root>/imdb/{IMAGE_DIR}/{MAT_FILE} (or <data_root>/imdb/"
    f"{MAT_FILE}), the IMDB-WIKI imdb_crop.tar unpacked"
)


# ----------------------------------------------------------------------------------------------------------------------
# imdb.mat


def _find_mat(folder: Path) -> Path:
    for candidate in (folder / IMAGE_DIR / MAT_FILE, folder / MAT_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"IMDB: {MAT_FILE} not found in {folder / IMAGE_DIR} or {folder}; expected {LAYOUT}")


def _cell_strings(cell: np.ndarray, path: Path) -> np.ndarray:
    """A MATLAB cell of strings (object array of char arrays) -> ``(n,)`` object array of str."""
    out = np.empty(cell.size, dtype=object)
    for i, item in enumerate(cell.ravel()):
        if isinstance(item, str):
            out[i] = item
        elif isinstance(item, np.ndarray) and item.dtype.kind == "U" and item.size <= 1:
            out[i] = str(item.ravel()[0]) if item.size else ""
        else:
            raise ValueError(f"{path}: {STRUCT}.full_path entry {i + 1} is not a string: {item!r}")
    return out


def read_imdb_mat(path: str | Path) -> dict[str, np.ndarray]:
    """The fields :data:`FIELDS` of the struct ``imdb`` in a MATLAB v5 file -> ``(n,)`` arrays.

    ``full_path`` is an object array of str, the others float64. Raises FileNotFoundError, or ValueError naming the
    file: not a MATLAB v5 file (v7.3/HDF5 included), no struct ``imdb``, a missing field (listing those present),
    fields of different lengths, a non-string path.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IMDB: {path} not found; expected {LAYOUT}")
    try:
        mat = loadmat(path)
    except NotImplementedError as e:
        raise ValueError(f"{path}: a MATLAB v7.3 (HDF5) file; save it as v5/v7 (-v7) or use the IMDB-WIKI original "
                         f"({e})") from e
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, ... on corrupt files
        raise ValueError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from e
    record = mat.get(STRUCT)
    if not isinstance(record, np.ndarray) or record.dtype.names is None or record.size != 1:
        keys = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path}: expected a 1x1 struct {STRUCT!r}, found variables {keys}")
    missing = [f for f in FIELDS if f not in record.dtype.names]
    if missing:
        raise ValueError(f"{path}: struct {STRUCT!r} lacks field(s) {missing}; it has {list(record.dtype.names)}")
    entry = record.ravel()[0]
    out: dict[str, np.ndarray] = {}
    for name in FIELDS:
        value = entry[name]
        if name == "full_path":
            out[name] = _cell_strings(value, path)
            continue
        try:
            out[name] = np.asarray(value, dtype=np.float64).ravel()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {STRUCT}.{name} is not numeric ({e})") from e
    lengths = {name: len(v) for name, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{path}: fields of {STRUCT!r} differ in length: {lengths}")
    return out


def birth_years(dob: np.ndarray) -> np.ndarray:
    """Birth years ``(n,)`` int64 of MATLAB datenums ``dob (n,)``: the year of ``date.fromordinal(int(dob) - 366)``;
    -1 where ``dob`` is not finite or outside Python's dates (before 0001-01-01 or after 9999-12-31)."""
    dob = np.asarray(dob, dtype=np.float64)
    ordinal = np.where(np.isfinite(dob), np.floor(np.nan_to_num(dob)), 0.0) - MATLAB_ORDINAL_OFFSET
    valid = np.isfinite(dob) & (ordinal >= 1) & (ordinal <= _MAX_ORDINAL)
    days = np.where(valid, np.floor(np.nan_to_num(dob)), _UNIX_EPOCH_DATENUM).astype(np.int64) - _UNIX_EPOCH_DATENUM
    years = (np.datetime64("1970-01-01", "D") + days).astype("datetime64[Y]").astype(np.int64) + 1970
    return np.where(valid, years, -1)


def age_bins(age: np.ndarray) -> np.ndarray:
    """Ages ``(n,)`` -> bias labels ``(n,)`` int64 in 0..11 (:data:`AGE_BIN_EDGES`)."""
    return np.searchsorted(np.asarray(AGE_BIN_EDGES), np.asarray(age), side="right").astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------------
# Cleaned ids


def _id_keys(full_path: str) -> tuple[str, ...]:
    """The forms under which a record may appear in a clean list: path, file name, file name without extension."""
    name = full_path.rsplit("/", 1)[-1]
    return full_path, name, name.rsplit(".", 1)[0]


def read_clean_ids(path: str | Path) -> set[str]:
    """A text file of image ids to keep, one per line: a path as in ``full_path`` (``01/nm..._1968.jpg``, optionally
    prefixed ``imdb_crop/``), a file name, or a file name without ``.jpg``; the first whitespace- or comma-separated
    token of each line counts. Blank lines and ``#`` comments are skipped. FileNotFoundError when missing;
    ValueError naming the file when it lists no id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IMDB: clean id list {path} not found")
    ids = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        token = line.split("#", 1)[0].replace(",", " ").split()
        if token:
            ids.add(token[0].removeprefix("./").removeprefix(f"{IMAGE_DIR}/"))
    if not ids:
        raise ValueError(f"{path}: no image id found (expected one path or file name per line)")
    return ids


# ----------------------------------------------------------------------------------------------------------------------
# Records and splits


def _valid_records(fields: dict[str, np.ndarray], clean: set[str] | None, tally: Tally) -> tuple[np.ndarray, ...]:
    """Indices ``(m,)`` of the usable records aged 0-29 or 40+, with their ages and genders ``(m,)``."""
    paths = fields["full_path"]
    birth = birth_years(fields["dob"])
    taken = fields["photo_taken"]
    age = np.where((birth >= 0) & np.isfinite(taken), np.nan_to_num(taken) - birth, -1)
    gender, face = fields["gender"], fields["face_score"]
    reasons = [
        ("records dropped: invalid dob", birth < 0),
        ("records dropped: invalid photo_taken", ~np.isfinite(taken)),
        (f"records dropped: age outside {VALID_AGE[0]}-{VALID_AGE[1]}", (age < VALID_AGE[0]) | (age > VALID_AGE[1])),
        ("records dropped: unknown gender", ~np.isin(gender, (0.0, 1.0))),
        ("records dropped: no face (face_score -Inf or NaN)", ~np.isfinite(face)),
    ]
    if clean is not None:
        listed = np.array([any(k in clean for k in _id_keys(p)) for p in paths], dtype=bool)
        reasons.append(("records dropped: not in the clean id list", ~listed))
    reasons.append((f"records in no split: age {YOUNG_MAX + 1}-{OLD_MIN - 1}", (age > YOUNG_MAX) & (age < OLD_MIN)))
    alive = np.ones(len(paths), dtype=bool)
    for reason, bad in reasons:
        hit = np.flatnonzero(alive & bad)
        tally.add_many(reason, [f"{paths[i]} (record {i + 1})" for i in hit[:3]], len(hit))
        alive &= ~bad
    keep = np.flatnonzero(alive)
    return keep, age[keep].astype(np.int64), gender[keep].astype(np.int64)


def split_indices(age: np.ndarray, gender: np.ndarray, train_on: str, seed: int) -> dict[str, np.ndarray]:
    """Indices per split into ``age``/``gender`` ``(n,)`` (gender 1 male, 0 female), each ascending.

    Only ages 0-29 and 40+ are eligible. ``test``: ``round(0.2 m)`` of the ``m`` eligible, drawn first with
    ``seed``; from the rest, EB1 = women 0-29 + men 40+, EB2 = women 40+ + men 0-29; ``train_on`` chooses one,
    of which ``round(0.1 k)`` go to ``val`` and the rest to ``train``.
    """
    if train_on not in TRAIN_SETS:
        raise ValueError(f"train_on must be one of {list(TRAIN_SETS)}, got {train_on!r}")
    rng = np.random.default_rng((seed, 0x1DB))
    young, old = age <= YOUNG_MAX, age >= OLD_MIN
    eligible = np.flatnonzero((age >= 0) & (young | old))
    test = rng.choice(eligible, int(round(TEST_FRACTION * len(eligible))), replace=False)
    rest = np.setdiff1d(eligible, test)
    male = gender[rest] == 1
    if train_on == "EB1":
        chosen = rest[(~male & young[rest]) | (male & old[rest])]
    else:
        chosen = rest[(~male & old[rest]) | (male & young[rest])]
    val = rng.choice(chosen, int(round(VAL_FRACTION * len(chosen))), replace=False)
    return {"train": np.setdiff1d(chosen, val), "val": np.sort(val), "test": np.sort(test)}


# ----------------------------------------------------------------------------------------------------------------------
# Metrics


def imdb_metrics(predicted: torch.Tensor, y: torch.Tensor, bins: torch.Tensor) -> dict[str, float]:
    """``accuracy`` of ``predicted (n,)`` against gender ``y (n,)``, per (gender, age group) with age groups read
    from the age bins ``bins (n,)`` (0-29 / 40+), and ``unbiased_accuracy``, the mean over the non-empty groups."""
    predicted, y, bins = predicted.cpu().long(), y.cpu().long(), bins.cpu().long()
    young_below = int(np.searchsorted(AGE_BIN_EDGES, YOUNG_MAX + 1, side="right"))  # first bin past 29
    old_from = int(np.searchsorted(AGE_BIN_EDGES, OLD_MIN, side="right"))  # first bin of 40+
    correct = (predicted == y).double()
    out = {"accuracy": float(correct.mean()) if len(y) else math.nan}
    groups = []
    for g, gname in ((0, "female"), (1, "male")):
        for label, members in (("0-29", bins < young_below), ("40+", bins >= old_from)):
            sel = members & (y == g)
            out[f"accuracy_{gname}_{label}"] = float(correct[sel].mean()) if sel.any() else math.nan
            groups.append(out[f"accuracy_{gname}_{label}"])
    present = [v for v in groups if not math.isnan(v)]
    out["unbiased_accuracy"] = sum(present) / len(present) if present else math.nan
    return out


def imdb_extra_metrics(logits: tuple[torch.Tensor, ...], split: Split) -> dict[str, float]:
    """``DataBundle.extra_metrics``: :func:`imdb_metrics` of the classes predicted by the split's target logits
    ``logits[0] (n,)``."""
    return imdb_metrics(predicted_classes(logits[0]), split.y, split.bias[:, 0])


# ----------------------------------------------------------------------------------------------------------------------
# Public loader


def _describe(name: str, split: Split) -> str:
    y, bins = split.y, split.bias[:, 0]
    young = bins < int(np.searchsorted(AGE_BIN_EDGES, YOUNG_MAX + 1, side="right"))
    cells = ", ".join(f"{g} {a}: {int(((y == gi) & (young == ai)).sum())}"
                      for gi, g in ((0, "women"), (1, "men")) for ai, a in ((True, "0-29"), (False, "40+")))
    return f"{name}: {len(split)} images ({cells})"


def load_imdb(
    data_root: str | Path | None,
    *,
    train_on: str = "EB1",
    image_size: int = 64,
    clean_ids: str | Path | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Loads IMDB face from ``<data_root>/imdb/`` (module docstring), training on ``train_on`` (EB1 or EB2).

    clean_ids: optional text file of the image ids to keep (:func:`read_clean_ids`). max_images: at most this many
    of the records aged 0-29 or 40+ (a random subset, ``seed``). seed: the test, val and subset draws. Returns a
    DataBundle with inputs ``(images (n, 3, S, S) uint8,)`` (normalised per minibatch by its ``to_model_input``),
    ``y (n,)`` int64 gender (1 male), ``bias (n, 1)`` int64 age bin 0..11, and ``extra_metrics`` (``accuracy`` and
    per-group accuracies).

    Raises FileNotFoundError (imdb.mat, imdb_crop/ or clean_ids missing; no image readable), ValueError (corrupt
    imdb.mat naming the file, no usable record, an empty split, bad arguments), ImportError (no Pillow).
    """
    check_image_args(image_size, max_images)
    if train_on not in TRAIN_SETS:
        raise ValueError(f"train_on must be one of {list(TRAIN_SETS)}, got {train_on!r}")
    folder, image_dir = image_dataset_folders(data_root, "IMDB", IMAGE_DIR, LAYOUT)
    mat_path = _find_mat(folder)
    fields = read_imdb_mat(mat_path)
    clean = read_clean_ids(clean_ids) if clean_ids is not None else None
    tally = Tally()
    records, age, gender = _valid_records(fields, clean, tally)
    if len(records) == 0:
        raise ValueError(f"IMDB: no usable record aged 0-29 or 40+ in {mat_path}: {' '.join(tally.lines())}")
    log = [f"{mat_path}: {len(fields['full_path'])} records, {len(records)} usable and aged 0-29 or 40+"]
    if clean is not None:
        known = {k for p in fields["full_path"] for k in _id_keys(p)}
        log.append(f"clean id list {clean_ids}: {len(clean)} ids, {len(clean - known)} of them match no record")
    pick = subsample(len(records), max_images, (seed, SUBSET_STREAM))
    if len(pick) < len(records):
        log.append(f"max_images={max_images}: a random subset (seed {seed}) of {len(pick)} of {len(records)} records")
    index = split_indices(age[pick], gender[pick], train_on, seed)
    splits = {}
    for name in SPLITS:
        rows = pick[index[name]]
        images, read = read_images([image_dir / p for p in fields["full_path"][records[rows]]], image_size, tally)
        rows = rows[read]
        bias = torch.from_numpy(age_bins(age[rows])).unsqueeze(1)
        splits[name] = Split((images,), torch.from_numpy(gender[rows]), bias)
    empty = [name for name, split in splits.items() if len(split) == 0]
    if empty:
        raise ValueError(f"IMDB: no image left in split(s) {empty} ({train_on}) of {folder}; {' '.join(tally.lines())}")
    log += tally.lines()
    log += [_describe(name, splits[name]) for name in SPLITS]
    log.append(f"splits (seed {seed}): test = {TEST_FRACTION:.0%} of the records aged 0-29 or 40+, drawn first; "
               f"train/val = {train_on} ({'women 0-29 + men 40+' if train_on == 'EB1' else 'women 40+ + men 0-29'}) "
               f"of the rest, val {VAL_FRACTION:.0%}; bias: age in {N_AGE_BINS} bins, edges {list(AGE_BIN_EDGES)}")
    log_report(log, logger)
    sizes = split_sizes(splits)
    return DataBundle(
        name="imdb",
        data_source="real",
        description=f"IMDB face ({folder}): gender, trained on {train_on}, age bias in {N_AGE_BINS} bins, "
                    f"{image_size}x{image_size} images; train/val/test {sizes}",
        splits=splits,
        n_classes=2,
        bias_classes=(N_AGE_BINS,),
        bias_names=("age",),
        tolerance=0,
        test_is_bias_free=True,
        log=log,
        extra_metrics=imdb_extra_metrics,
        to_model_input=imagenet_batch,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Registration (python/data/registry.py)


def _check_train_on(config: TrainConfig) -> None:
    if config.train_on not in ("EB1", "EB2"):
        raise ValueError(f"train_on must be EB1 or EB2 (IMDB), got {config.train_on!r}")


def _load(config: TrainConfig) -> DataBundle:
    return load_imdb(config.data_root, train_on=config.train_on, image_size=config.image_size,
                     clean_ids=config.clean_ids, max_images=config.max_images, seed=config.split)


SPEC = DatasetSpec(
    name="imdb",
    data_root="DIR/imdb/imdb_crop/ with imdb.mat (required)",
    summary="IMDB-WIKI faces under --data-root",
    load=_load,
    model=ModelSpec(branch=64, target=(64,), bias=(64,), estimator=(64, 64, 32, 32)),
    features=functools.partial(resnet_features, freeze_bn_when_pretrained=True),  # as the paper does
    defaults={"lambda_": 1.0, "pretrain_epochs": 5, "epochs": 5, "bias_epochs": 1, "estimator_epochs": 1},
    quick_train_rows=1024,
    settings=(
        Setting("train_on", str, "EB1", Flag("IMDB: train on extreme-bias set EB1 (default) or EB2",
                                             choices=("EB1", "EB2")), check=_check_train_on),
        Setting("clean_ids", str | None, None, Flag("IMDB: text file of image ids to keep", metavar="FILE")),
        *IMAGE_SETTINGS,
    ),
)
