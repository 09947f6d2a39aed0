"""CelebA and IMDB loaders on tiny files written in the real formats (JPEGs, the attribute/partition lists, imdb.mat).

Every image is one solid colour that encodes its record number, so a split's images can be traced to records.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from python.data import imdb as imdb_mod
from python.data.celeba import (
    conflicting_groups,
    decode_image,
    group_accuracies,
    load_celeba,
    read_attributes,
    subsample,
)
from python.data.imdb import age_bins, birth_years, imdb_metrics, load_imdb, read_imdb_mat, split_indices

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
BLOND, MAKEUP, MALE = CELEBA_ATTRS.index("Blond_Hair"), CELEBA_ATTRS.index("Heavy_Makeup"), CELEBA_ATTRS.index("Male")
SIZE = 8  # image_size of the loaders in these tests


def write_id_image(path: Path, record: int, size: tuple[int, int] = (8, 8)) -> None:
    """A solid-colour JPEG whose red and green levels encode ``record`` (0..1023)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (8 * (record // 32) + 4, 8 * (record % 32) + 4, 128)
    Image.new("RGB", size, colour).save(path, quality=95)


def image_ids(images: torch.Tensor) -> list[int]:
    """Record numbers of uint8 images ``(n, 3, S, S)`` written by :func:`write_id_image`."""
    rgb = images.double().mean((2, 3))
    levels = torch.round((rgb[:, :2] - 4) / 8).long()
    return (32 * levels[:, 0] + levels[:, 1]).tolist()


def logits_of(predicted: torch.Tensor) -> torch.Tensor:
    """Binary target logits ``(n,)`` that predict the 0/1 classes ``predicted (n,)``: -1 for class 0, +1 for 1."""
    return predicted.float() * 2 - 1


# ----------------------------------------------------------------------------------------------------------------------
# CelebA

# (blond, male, makeup, partition) per record; train: blond women and dark-haired men dominate
CELEBA_RECORDS = (
    [(1, 0, 1, 0)] * 4 + [(0, 1, 0, 0)] * 4 + [(1, 1, 0, 0), (0, 0, 1, 0)]
    + [(1, 0, 1, 1), (0, 1, 0, 1), (1, 1, 0, 1), (0, 0, 0, 1)]
    + [(1, 0, 1, 2), (0, 1, 0, 2), (0, 0, 1, 2)]
)


def celeba_name(i: int) -> str:
    return f"{i + 1:06d}.jpg"


def write_celeba(root: Path, records=CELEBA_RECORDS, *, image_size: tuple[int, int] = (8, 10)) -> Path:
    """The three CelebA files for ``records`` under ``root/celeba``; image ``i`` encodes record ``i``."""
    folder = root / "celeba"
    attr_lines, part_lines = [str(len(records)), " ".join(CELEBA_ATTRS) + " "], []
    for i, (blond, male, makeup, part) in enumerate(records):
        values = [-1] * 40
        for col, on in ((BLOND, blond), (MALE, male), (MAKEUP, makeup)):
            values[col] = 1 if on else -1
        attr_lines.append(celeba_name(i) + " " + " ".join(f"{v:2d}" for v in values))
        part_lines.append(f"{celeba_name(i)} {part}")
        write_id_image(folder / "img_align_celeba" / celeba_name(i), i, image_size)
    (folder / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return folder


def test_celeba_splits_follow_the_partition_list(tmp_path):
    write_celeba(tmp_path)
    bundle = load_celeba(tmp_path, image_size=SIZE)
    assert bundle.name == "celeba" and bundle.data_source == "real" and bundle.n_classes == 2
    assert bundle.bias_classes == (2,) and bundle.bias_names == ("male",)
    want = {"train": 0, "test": 1, "val": 2}  # test = CelebA's validation set
    for name, part in want.items():
        split = bundle.splits[name]
        ids = image_ids(split.inputs[0])
        assert ids == [i for i, r in enumerate(CELEBA_RECORDS) if r[3] == part]
        assert split.inputs[0].shape == (len(ids), 3, SIZE, SIZE) and split.inputs[0].dtype == torch.uint8
        assert split.y.tolist() == [CELEBA_RECORDS[i][0] for i in ids]
        assert split.bias[:, 0].tolist() == [CELEBA_RECORDS[i][1] for i in ids]
    assert not any("skipped" in line for line in bundle.log)


@pytest.mark.parametrize("spelling", ["HeavyMakeup", "Heavy_Makeup", "heavy_makeup"])
def test_celeba_target_spellings(tmp_path, spelling):
    write_celeba(tmp_path)
    split = load_celeba(tmp_path, target=spelling, image_size=SIZE).splits["train"]
    assert split.y.tolist() == [CELEBA_RECORDS[i][2] for i in image_ids(split.inputs[0])]
    assert load_celeba(tmp_path, target="BlondHair", image_size=SIZE).splits["train"].y.sum() == 5


def test_centre_crop_keeps_the_middle_square(tmp_path):
    img = np.zeros((16, 10, 3), dtype=np.uint8)  # 10 wide, 16 tall: rows 3..12 are the centre square
    img[3:13] = 200
    Image.fromarray(img).save(tmp_path / "tall.png")
    out = decode_image(tmp_path / "tall.png", 5)
    assert out.shape == (5, 5, 3) and (out == 200).all()


def test_group_accuracies_hand_case():
    y = torch.tensor([1, 1, 1, 0, 0, 1, 0, 0])
    male = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0])
    pred = torch.tensor([1, 1, 0, 0, 0, 0, 0, 1])
    # groups (y, male): (1,0) 2/3, (0,1) 2/2, (1,1) 0/1, (0,0) 1/2
    out = group_accuracies(pred, y, male, ((0, 0), (1, 1)))
    assert out["accuracy_y1_male0"] == pytest.approx(2 / 3) and out["accuracy_y0_male0"] == 0.5
    assert out["unbiased_accuracy"] == pytest.approx((2 / 3 + 1 + 0 + 0.5) / 4)
    assert out["bias_conflicting_accuracy"] == pytest.approx(0.25)
    empty = group_accuracies(torch.tensor([1]), torch.tensor([1]), torch.tensor([0]), ((0, 0), (1, 1)))
    assert empty["unbiased_accuracy"] == 1.0 and math.isnan(empty["bias_conflicting_accuracy"])


def test_conflicting_groups_from_counts():
    def table(n00, n01, n10, n11):
        cells = [(0, 0)] * n00 + [(0, 1)] * n01 + [(1, 0)] * n10 + [(1, 1)] * n11
        return torch.tensor([c[0] for c in cells]), torch.tensor([c[1] for c in cells])

    # CelebA's train counts / 100 for Blond_Hair: non-blond women, non-blond men, blond women, blond men
    assert conflicting_groups(*table(716, 669, 229, 14)) == ((0, 0), (1, 1))
    assert conflicting_groups(*table(10, 2, 2, 10)) == ((0, 1), (1, 0))
    assert conflicting_groups(*table(5, 5, 5, 5)) == ((0, 1), (1, 0))


def test_celeba_extra_metrics(tmp_path):
    write_celeba(tmp_path)
    bundle = load_celeba(tmp_path, image_size=SIZE)
    test = bundle.splits["test"]
    male = test.bias[:, 0]
    cases = {
        "perfect": (test.y, 1.0, 1.0),
        "not male (the shortcut)": (1 - male, 0.5, 0.0),
        "always 0": (torch.zeros_like(test.y), 0.5, 0.5),
    }
    for what, (pred, unbiased, conflicting) in cases.items():
        out = bundle.extra_metrics((logits_of(pred),), test)
        assert out["unbiased_accuracy"] == pytest.approx(unbiased), what
        assert out["bias_conflicting_accuracy"] == pytest.approx(conflicting), what


def test_celeba_missing_and_corrupt_images_are_counted(tmp_path):
    folder = write_celeba(tmp_path)
    (folder / "img_align_celeba" / celeba_name(0)).unlink()
    (folder / "img_align_celeba" / celeba_name(1)).write_bytes(b"not a jpeg")
    bundle = load_celeba(tmp_path, image_size=SIZE)
    log = "\n".join(bundle.log)
    assert "listed images skipped: file missing: 1" in log and celeba_name(0) in log
    assert "images skipped: cannot be decoded: 1" in log and celeba_name(1) in log
    assert image_ids(bundle.splits["train"].inputs[0]) == list(range(2, 10))


def test_celeba_record_without_partition_is_counted(tmp_path):
    folder = write_celeba(tmp_path)
    lines = (folder / "list_eval_partition.txt").read_text().splitlines()
    (folder / "list_eval_partition.txt").write_text("\n".join(lines[1:]) + "\n")
    bundle = load_celeba(tmp_path, image_size=SIZE)
    assert any("not in list_eval_partition.txt: 1 (e.g. 000001.jpg)" in line for line in bundle.log)
    assert len(bundle.splits["train"]) == 9


def test_celeba_all_images_missing(tmp_path):
    folder = write_celeba(tmp_path)
    for p in (folder / "img_align_celeba").iterdir():
        p.unlink()
    with pytest.raises(FileNotFoundError, match="none of the 17 listed images could be read"):
        load_celeba(tmp_path, image_size=SIZE)


def test_celeba_missing_files_name_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="CelebA cannot ship.*--data-root"):
        load_celeba(None)
    with pytest.raises(FileNotFoundError, match=r"celeba/img_align_celeba not found; expected .*list_attr_celeba"):
        load_celeba(tmp_path)
    folder = write_celeba(tmp_path)
    (folder / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"list_eval_partition\.txt not found"):
        load_celeba(tmp_path, image_size=SIZE)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines.__setitem__(4, lines[4].rsplit(" ", 1)[0]), r"line 5: 40 fields, expected a file name"),
        (lambda lines: lines.__setitem__(3, lines[3][:-2] + " 0"), r"line 4: attribute value '0' is not 1 or -1"),
        (lambda lines: lines.__setitem__(0, "18"), r"line 1: the count says 18 images, the file lists 17"),
        (lambda lines: lines.__setitem__(0, "many"), r"line 1: 'many' is not the image count"),
        (lambda lines: lines.__setitem__(1, "Male Blond_Hair"), r"line 2: 2 attribute names, expected 40"),
        (lambda lines: lines.__setitem__(5, lines[4]), r"line 6: 000003\.jpg listed twice"),
    ],
)
def test_celeba_malformed_attr_lines(tmp_path, edit, message):
    folder = write_celeba(tmp_path)
    path = folder / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt " + message):
        read_attributes(path)


def test_celeba_malformed_partition_and_unknown_target(tmp_path):
    folder = write_celeba(tmp_path)
    path = folder / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    lines[2] = "000003.jpg 3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"list_eval_partition\.txt line 3: '000003\.jpg 3' is not"):
        load_celeba(tmp_path, image_size=SIZE)
    write_celeba(tmp_path)
    with pytest.raises(ValueError, match=r"attribute 'Purple_Hair' not in .*list_attr_celeba\.txt"):
        load_celeba(tmp_path, target="Purple_Hair", image_size=SIZE)
    with pytest.raises(ValueError, match="image_size"):
        load_celeba(tmp_path, image_size=2)


def test_celeba_max_images(tmp_path):
    write_celeba(tmp_path)
    bundle = load_celeba(tmp_path, image_size=SIZE, max_images=14, seed=3)
    assert sum(len(s) for s in bundle.splits.values()) == 14
    assert any("max_images=14" in line for line in bundle.log)
    with pytest.raises(ValueError, match="no image left in split"):
        load_celeba(tmp_path, image_size=SIZE, max_images=1)


# ----------------------------------------------------------------------------------------------------------------------
# IMDB


def datenum(year: int, month: int = 6, day: int = 15, fraction: float = 0.0) -> float:
    """MATLAB datenum of a date (Python ordinal + 366)."""
    return dt.date(year, month, day).toordinal() + 366 + fraction


def imdb_records() -> list[dict]:
    """10 records in each of women/men x 0-29/40+, 3 aged 30-39, and one of each invalid kind."""
    recs = []
    for gender in (0, 1):
        for ages in ((5, 12, 18, 21, 23, 25, 27, 28, 29, 29), (40, 41, 44, 50, 55, 61, 64, 65, 77, 100)):
            recs += [{"age": a, "gender": float(gender)} for a in ages]
    recs += [{"age": a, "gender": 1.0} for a in (30, 35, 39)]
    recs += [
        {"age": 120, "gender": 0.0, "why": "age"},
        {"age": -2, "gender": 0.0, "why": "age"},
        {"age": 30, "gender": math.nan, "why": "gender"},
        {"age": 25, "gender": 1.0, "face": -math.inf, "why": "face"},
        {"age": 25, "gender": 1.0, "dob": 0.0, "why": "dob"},
    ]
    return recs


def imdb_path(i: int) -> str:
    return f"{i % 100:02d}/nm{i:07d}_rm{i}_1970-1-1_2000.jpg"


def write_imdb(root: Path, records: list[dict] | None = None, *, mat_dir: str = "imdb_crop") -> Path:
    """imdb_crop/ with one JPEG per record and imdb.mat (struct ``imdb``, the real layout) under ``root/imdb``."""
    records = imdb_records() if records is None else records
    folder = root / "imdb"
    n = len(records)
    dob, taken, gender, face = (np.zeros((1, n)) for _ in range(4))
    paths = np.empty((1, n), dtype=object)
    for i, r in enumerate(records):
        taken[0, i] = 2010
        dob[0, i] = r.get("dob", datenum(2010 - r["age"], 1 + i % 12, 1 + i % 28, 0.25 * (i % 4)))
        gender[0, i], face[0, i] = r["gender"], r.get("face", 1.5 + i / n)
        paths[0, i] = imdb_path(i)
        write_id_image(folder / "imdb_crop" / imdb_path(i), i)
    struct = {"dob": dob, "photo_taken": taken, "full_path": paths, "gender": gender, "face_score": face,
              "second_face_score": np.full((1, n), np.nan), "name": paths.copy()}
    (folder / mat_dir).mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / mat_dir / "imdb.mat", {"imdb": struct})
    return folder


def test_birth_years_match_the_datetime_formula():
    rng = np.random.default_rng(0)
    dobs = np.concatenate([rng.uniform(367, 740000, 200), [367.0, 693962.9, 711000.5, 723000.0]])
    for d in dobs:
        want = (dt.datetime.fromordinal(int(d)) + dt.timedelta(days=d % 1) - dt.timedelta(days=366)).year
        assert birth_years(np.array([d]))[0] == want, d
    assert birth_years(np.array([np.nan, 0.0, 366.9, -5.0])).tolist() == [-1, -1, -1, -1]


def test_age_bins():
    ages = np.array([0, 14, 15, 19, 20, 29, 30, 39, 40, 44, 60, 64, 65, 100])
    assert age_bins(ages).tolist() == [0, 0, 1, 1, 2, 3, 4, 5, 6, 6, 10, 10, 11, 11]
    assert imdb_mod.N_AGE_BINS == 12


def test_split_indices_composition():
    rng = np.random.default_rng(1)
    age = rng.integers(0, 101, 2000)
    gender = rng.integers(0, 2, 2000)
    young, old = age <= 29, age >= 40
    eligible = np.flatnonzero(young | old)
    tests = []
    for train_on in ("EB1", "EB2"):
        idx = split_indices(age, gender, train_on, seed=5)
        test, trainval = idx["test"], np.concatenate([idx["train"], idx["val"]])
        assert len(test) == round(0.2 * len(eligible)) and set(test) <= set(eligible)
        assert not set(test) & set(trainval) and not set(idx["train"]) & set(idx["val"])
        assert len(idx["val"]) == round(0.1 * len(trainval))
        women = gender[trainval] == 0
        if train_on == "EB1":
            assert (young[trainval] == women).all()  # women 0-29 and men 40+
        else:
            assert (old[trainval] == women).all()  # women 40+ and men 0-29
        rest = np.setdiff1d(eligible, test)
        want = rest[((gender[rest] == 0) & young[rest]) | ((gender[rest] == 1) & old[rest])] if train_on == "EB1" \
            else rest[((gender[rest] == 0) & old[rest]) | ((gender[rest] == 1) & young[rest])]
        assert np.array_equal(np.sort(trainval), want)
        tests.append(test)
    assert np.array_equal(tests[0], tests[1])  # the same test set for EB1 and EB2
    assert not np.array_equal(split_indices(age, gender, "EB1", seed=6)["test"], tests[0])
    with pytest.raises(ValueError, match="train_on"):
        split_indices(age, gender, "EB3", seed=0)


@pytest.mark.parametrize("train_on", ["EB1", "EB2"])
def test_imdb_loader_splits_and_labels(tmp_path, train_on):
    records = imdb_records()
    write_imdb(tmp_path, records)
    bundle = load_imdb(tmp_path, train_on=train_on, image_size=SIZE)
    assert bundle.name == "imdb" and bundle.bias_classes == (12,) and bundle.n_classes == 2
    assert bundle.test_is_bias_free
    ids = {name: image_ids(split.inputs[0]) for name, split in bundle.splits.items()}
    in_set = [i for i in range(40) if i not in ids["test"]
              and ((records[i]["age"] <= 29) != (records[i]["gender"] == 1)) == (train_on == "EB1")]
    assert len(ids["test"]) == 8 and sorted(ids["train"] + ids["val"]) == in_set
    assert len(ids["val"]) == round(0.1 * len(in_set))
    assert not set(ids["test"]) & (set(ids["train"]) | set(ids["val"]))
    for name, split in bundle.splits.items():
        assert split.y.tolist() == [int(records[i]["gender"]) for i in ids[name]]
        assert split.bias[:, 0].tolist() == age_bins(np.array([records[i]["age"] for i in ids[name]])).tolist()
    for i in ids["train"] + ids["val"]:
        young, male = records[i]["age"] <= 29, records[i]["gender"] == 1
        assert (young != male) if train_on == "EB1" else (young == male)
    assert all(i < 40 for name in ids for i in ids[name])  # no 30-39 and no invalid record
    log = "\n".join(bundle.log)
    for reason, count in [("invalid dob", 1), ("age outside 0-100", 2), ("unknown gender", 1),
                          ("no face (face_score -Inf or NaN)", 1), ("records in no split: age 30-39", 3)]:
        assert f"{reason}: {count} (e.g." in log, reason


def test_imdb_metrics_hand_case_and_extra_metrics(tmp_path):
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    bins = torch.from_numpy(age_bins(np.array([20, 25, 50, 45, 70, 10, 29, 41])))
    pred = torch.tensor([0, 1, 1, 1, 1, 0, 0, 0])
    out = imdb_metrics(pred, y, bins)
    assert out["accuracy"] == 0.5
    assert out["accuracy_female_0-29"] == 0.5 and out["accuracy_female_40+"] == 0.5
    assert out["accuracy_male_40+"] == 1.0 and out["accuracy_male_0-29"] == 0.0
    assert out["unbiased_accuracy"] == 0.5
    write_imdb(tmp_path)
    bundle = load_imdb(tmp_path, image_size=SIZE)
    test = bundle.splits["test"]
    assert bundle.extra_metrics((logits_of(test.y),), test)["accuracy"] == 1.0
    assert bundle.extra_metrics((logits_of(1 - test.y),), test)["accuracy"] == 0.0


def test_imdb_clean_ids(tmp_path):
    records = imdb_records()
    folder = write_imdb(tmp_path, records)
    dropped = [0, 11, 22, 33]
    lines = ["# cleaned list"]
    for i in range(len(records)):
        if i in dropped:
            continue
        form = i % 3
        lines.append(f"imdb_crop/{imdb_path(i)}" if form == 0 else
                     imdb_path(i).split("/")[1] if form == 1 else imdb_path(i).split("/")[1][:-4] + ", 0.9")
    lines.append("nm9999999_rm1_1970-1-1_2000.jpg")
    (folder / "clean.txt").write_text("\n".join(lines) + "\n")
    bundle = load_imdb(tmp_path, image_size=SIZE, clean_ids=folder / "clean.txt")
    log = "\n".join(bundle.log)
    assert "records dropped: not in the clean id list: 4 (e.g." in log
    assert "1 of them match no record" in log
    kept = {i for split in bundle.splits.values() for i in image_ids(split.inputs[0])}
    assert not kept & set(dropped)
    with pytest.raises(FileNotFoundError, match="clean id list .*nope.txt not found"):
        load_imdb(tmp_path, image_size=SIZE, clean_ids=folder / "nope.txt")


def test_imdb_missing_and_corrupt_images_are_counted(tmp_path):
    folder = write_imdb(tmp_path)
    (folder / "imdb_crop" / imdb_path(3)).unlink()
    (folder / "imdb_crop" / imdb_path(14)).write_bytes(b"\xff\xd8 truncated")
    bundle = load_imdb(tmp_path, train_on="EB1", image_size=SIZE)
    bundle2 = load_imdb(tmp_path, train_on="EB2", image_size=SIZE)
    for b in (bundle, bundle2):
        ids = {i for split in b.splits.values() for i in image_ids(split.inputs[0])}
        assert not ids & {3, 14}
    both = "\n".join(bundle.log + bundle2.log)  # each record is read under EB1 or EB2 (or test)
    assert f"listed images skipped: file missing: 1 (e.g. {folder / 'imdb_crop' / imdb_path(3)}" in both
    assert f"images skipped: cannot be decoded: 1 (e.g. {folder / 'imdb_crop' / imdb_path(14)}" in both


def test_imdb_mat_next_to_imdb_crop_and_max_images(tmp_path):
    write_imdb(tmp_path, mat_dir=".")
    bundle = load_imdb(tmp_path, image_size=SIZE, max_images=30)
    assert len(bundle.splits["test"]) == 6
    assert any("max_images=30" in line for line in bundle.log)


def test_imdb_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="IMDB cannot ship.*--data-root"):
        load_imdb(None)
    with pytest.raises(FileNotFoundError, match=r"imdb/imdb_crop not found; expected"):
        load_imdb(tmp_path)
    folder = write_imdb(tmp_path)
    mat = folder / "imdb_crop" / "imdb.mat"
    fields = read_imdb_mat(mat)
    assert fields["full_path"][0] == imdb_path(0) and fields["gender"].shape == (len(imdb_records()),)
    mat.write_bytes(b"MATLAB 5.0 MAT-file garbage")
    with pytest.raises(ValueError, match=r"imdb\.mat: not a readable MATLAB file"):
        load_imdb(tmp_path, image_size=SIZE)
    scipy.io.savemat(mat, {"wiki": {"dob": np.zeros((1, 2))}})
    with pytest.raises(ValueError, match=r"imdb\.mat: expected a 1x1 struct 'imdb', found variables \['wiki'\]"):
        read_imdb_mat(mat)
    scipy.io.savemat(mat, {"imdb": {"dob": np.zeros((1, 2)), "photo_taken": np.zeros((1, 2))}})
    with pytest.raises(ValueError, match=r"imdb\.mat: struct 'imdb' lacks field\(s\) \['full_path', 'gender'"):
        read_imdb_mat(mat)
    paths = np.array([["a.jpg", "b.jpg"]], dtype=object)
    scipy.io.savemat(mat, {"imdb": {"dob": np.zeros((1, 2)), "photo_taken": np.zeros((1, 3)), "full_path": paths,
                                    "gender": np.zeros((1, 2)), "face_score": np.zeros((1, 2))}})
    with pytest.raises(ValueError, match=r"imdb\.mat: fields of 'imdb' differ in length: .*'photo_taken': 3"):
        read_imdb_mat(mat)
    mat.unlink()
    with pytest.raises(FileNotFoundError, match=r"imdb\.mat not found in .*imdb_crop"):
        load_imdb(tmp_path, image_size=SIZE)


def test_imdb_no_usable_record(tmp_path):
    write_imdb(tmp_path, [{"age": 33, "gender": 1.0}, {"age": 20, "gender": math.nan}])
    with pytest.raises(ValueError, match=r"no usable record aged 0-29 or 40\+ in .*imdb\.mat"):
        load_imdb(tmp_path, image_size=SIZE)


@pytest.mark.parametrize(("n", "max_images", "seed"), [(100, 10, 0), (1000, 37, 3), (50, 49, 1), (50, 60, 2)])
def test_subsample_keeps_each_loaders_draw(n, max_images, seed):
    """The shared subsample draws what CelebA's (seed) and IMDB's ((seed, 0x5B)) own copies drew."""
    def old(rng_seed):
        if max_images >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng(rng_seed).choice(n, max_images, replace=False))

    np.testing.assert_array_equal(subsample(n, max_images, seed), old(seed))
    np.testing.assert_array_equal(subsample(n, max_images, (seed, imdb_mod.SUBSET_STREAM)), old((seed, 0x5B)))
    np.testing.assert_array_equal(subsample(n, None, seed), np.arange(n))

