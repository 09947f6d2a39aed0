"""mPower loader and simulator: tiny exports written in the real Synapse schema, and small simulated cohorts."""

from __future__ import annotations

import csv
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from python.data import mpower
from python.data.base import Split
from python.data.mpower import (
    AGE_BIN_NAMES,
    COHORTS,
    TAPPING_FILE_COLUMN,
    SimulatorParams,
    age_bin,
    hand_features,
    keep_subjects,
    load_mpower,
    prepare_simulated_cohort,
    shortcut_check,
    simulate_cohort,
)

BUTTON = {"L": "TappedButtonLeft", "R": "TappedButtonRight", "N": "TappedButtonNone"}
CELL_AGES = {2: 47, 3: 52, 4: 57, 5: 62, 6: 67, 7: 75}  # one age per test interval 45-49 ... 70+


# ---------------------------------------------------------------------------------------------------------------------
# Writing exports in the real schema


def make_taps(times: list[float], x: float, y: float = 460.0, buttons: str = "LR") -> list[dict[str, object]]:
    """A TappingSamples JSON list; button letters L/R/N cycle over the taps."""
    return [
        {"TapTimeStamp": t, "TapCoordinate": f"{{{x}, {y}}}", "TappedButtonId": BUTTON[buttons[i % len(buttons)]]}
        for i, t in enumerate(times)
    ]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_export(
    data_root: Path, demographics: list[tuple[str, object, object]], records: list[tuple[str, str, object, object]]
) -> Path:
    """Writes ``data_root/mpower/`` like the Synapse export (pandas index column and extra columns included).

    demographics: (healthCode, age, professional-diagnosis). records: (recordId, healthCode, fileHandleId, content)
    with content a list (dumped as JSON), a str (written verbatim) or None (no file written).
    """
    root = data_root / "mpower"
    (root / "tapping_samples").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (record, code, handle, content) in enumerate(records):
        rows.append([f"{i}_1", record, code, 1426000000000 + i, "version 1.0.5, build 12", handle, "{1, 2}"])
        if content is not None:
            text = content if isinstance(content, str) else json.dumps(content)
            (root / "tapping_samples" / f"{str(handle).removesuffix('.0')}.json").write_text(text)
    write_csv(
        root / "tapping.csv",
        [
            "",
            "recordId",
            "healthCode",
            "createdOn",
            "appVersion",
            TAPPING_FILE_COLUMN,
            "tapping_results.json.ButtonRectLeft",
        ],
        rows,
    )
    write_csv(
        root / "demographics.csv",
        ["", "recordId", "healthCode", "age", "gender", "professional-diagnosis"],
        [[f"{i}_0", f"d{i}", code, age, "Female", pd] for i, (code, age, pd) in enumerate(demographics)],
    )
    return root


def cohort(per_cell: int = 1, young: int = 3, max_records: int = 1, seed: int = 0):
    """Subjects filling every test cell (``per_cell`` each) plus ``young`` subjects aged 25-30.

    Subject s has marker x = 10 + s on all its taps, so records can be traced back to subjects.
    Returns (demographics, records, subject -> (age, pd)).
    """
    rng = np.random.default_rng(seed)
    people = [(CELL_AGES[b], pd) for b in CELL_AGES for pd in (True, False) for _ in range(per_cell)]
    people += [(25 + k % 6, k % 3 == 0) for k in range(young)]
    demo, records = [], []
    for s, (age, pd) in enumerate(people):
        demo.append((f"hc{s}", age, "True" if pd else "False"))
        for r in range(int(rng.integers(1, max_records + 1))):
            records.append((f"rec{s}_{r}", f"hc{s}", 9000 + 10 * s + r, make_taps([50.0, 50.2, 50.4], x=10 + s)))
    order = rng.permutation(len(records))
    return demo, [records[i] for i in order], dict(enumerate(people))


def all_records(bundle) -> list[tuple[str, int, torch.Tensor, torch.Tensor, int, int]]:
    """(split, subject marker, taps (6, T), mask (T,), y, bias) for every record of every split."""
    out = []
    for name, split in bundle.splits.items():
        taps, mask = split.inputs
        for i in range(len(split)):
            marker = round(float(taps[i, 1, 0]) * 320) - 10
            out.append((name, marker, taps[i], mask[i], int(split.y[i]), int(split.bias[i, 0])))
    return out


def find(bundle, marker: int):
    rows = [r for r in all_records(bundle) if r[1] == marker]
    assert len(rows) == 1, f"marker {marker}: {len(rows)} records"
    return rows[0]


def log_line(bundle, prefix: str) -> str:
    lines = [line for line in bundle.log if line.startswith(prefix)]
    assert len(lines) == 1, (prefix, bundle.log)
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------------
# Parsing


def test_record_features_intervals_coordinates_buttons_mask(tmp_path):
    demo, records, people = cohort()
    s = len(people)
    demo += [(f"hc{s}", 30, "false"), (f"hc{s + 1}", 31, "TRUE")]
    # out of order and one tap too many for max_taps=4: sorted, then cut after the 4th tap
    special = [
        {"TapTimeStamp": t, "TapCoordinate": f"{{{10 + s}, 284}}", "TappedButtonId": BUTTON[b]}
        for t, b in [(100.3, "N"), (100.0, "L"), (100.1, "R"), (100.8, "R"), (100.6, "L")]
    ]
    records += [
        ("special", f"hc{s}", 7001, special),
        ("short", f"hc{s + 1}", "7002.0", make_taps([3.0, 3.25], x=11 + s, y=142, buttons="R")),
    ]
    bundle = load_mpower(write_export(tmp_path, demo, records).parent, max_taps=4, per_cell=1)
    assert bundle.data_source == "real"
    for split in bundle.splits.values():
        taps, mask = split.inputs
        assert taps.dtype == torch.float32 and mask.dtype == torch.bool and taps.shape[1:] == (6, 4)
        assert mask.shape == (len(split), 4) and split.y.dtype == torch.int64 and split.bias.shape == (len(split), 1)
    _, _, taps, mask, y, bias = find(bundle, s)
    torch.testing.assert_close(taps[0], torch.tensor([0.0, 0.1, 0.2, 0.3]), atol=1e-5, rtol=0)
    torch.testing.assert_close(taps[1], torch.full((4,), (10 + s) / 320))
    torch.testing.assert_close(taps[2], torch.full((4,), 0.5))
    assert taps[3:].T.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]  # L, R, N, L after sorting
    assert mask.tolist() == [True] * 4 and (y, bias) == (0, 0)
    _, _, taps, mask, y, bias = find(bundle, s + 1)  # file handle written as a float by pandas
    assert mask.tolist() == [True, True, False, False] and (y, bias) == (1, 0)
    torch.testing.assert_close(taps[0, :2], torch.tensor([0.0, 0.25]))
    torch.testing.assert_close(taps[2, :2], torch.full((2,), 0.25))
    assert taps[:, 2:].abs().sum() == 0 and taps[4, :2].tolist() == [1.0, 1.0]
    assert log_line(bundle, "records truncated to max_taps=4 taps: 1").count("record special (5 taps)") == 1
    assert "record special" in log_line(bundle, "records whose taps were sorted by TapTimeStamp: 1")


def test_join_on_health_code_labels_and_bias(tmp_path):
    demo, records, people = cohort(per_cell=2, young=6, max_records=3, seed=1)
    demo = demo[::-1]  # demographics order differs from the tapping table's
    bundle = load_mpower(write_export(tmp_path, demo, records).parent, per_cell=2)
    rows = all_records(bundle)
    assert len(rows) + int(log_line(bundle, "records not used").split()[3]) == len(records)
    for _, marker, _, _, y, bias in rows:
        age, pd = people[marker]
        assert (y, bias) == (int(pd), age_bin(age))


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (18, 0),
        (34, 0),
        (35, 1),
        (44, 1),
        (45, 2),
        (49, 2),
        (50, 3),
        (54, 3),
        (55, 4),
        (59, 4),
        (60, 5),
        (64, 5),
        (65, 6),
        (69, 6),
        (70, 7),
        (99, 7),
    ],
)
def test_age_bin_edges(age, expected):
    assert age_bin(age) == expected


def test_age_bins_through_loader(tmp_path):
    demo, records, people = cohort(young=2)
    edges = [34, 35, 44, 45, 49, 50, 69, 70]
    s0 = len(people)
    for k, age in enumerate(edges):
        demo.append((f"hc{s0 + k}", f"{age}.0" if k % 2 else age, "false"))  # pandas may write ints as floats
        records.append((f"edge{k}", f"hc{s0 + k}", 8000 + k, make_taps([1.0, 1.5], x=10 + s0 + k)))
    bundle = load_mpower(write_export(tmp_path, demo, records).parent, per_cell=1)
    got = [find(bundle, s0 + k)[5] for k in range(len(edges))]
    assert got == [0, 1, 1, 2, 2, 3, 6, 7]


# ---------------------------------------------------------------------------------------------------------------------
# Skipped and malformed input


def test_bad_records_and_rows_are_skipped_and_counted(tmp_path, caplog):
    demo, records, people = cohort()
    s = len(people)
    demo += [
        ("hc_badage", "abc", "true"),
        ("hc_oldage", "250", "false"),
        ("hc_noage", "", "false"),
        ("hc_nodx", 40, ""),
        ("hc_okdx", 40, "1"),
    ]
    records += [
        ("r_corrupt", "hc0", 9901, '[{"TapTimeStamp": 1.0,\n  "TapCoordinate": '),
        ("r_missing", "hc0", 9902, None),
        ("r_empty", "hc0", 9903, "[]"),
        ("r_nodemo", "hc_unknown", 9904, make_taps([1.0, 1.2], x=500)),
        ("r_badage", "hc_badage", 9905, make_taps([1.0, 1.2], x=501)),
        ("r_nodx", "hc_nodx", 9906, make_taps([1.0, 1.2], x=502)),
        ("r_nohandle", "hc0", "", None),
        (
            "r_badtap",
            "hc_okdx",
            9907,
            make_taps([1.0, 1.2, 1.4], x=10 + s)
            + [{"TapTimeStamp": 2.0, "TapCoordinate": "160, 402", "TappedButtonId": "TappedButtonLeft"}],
        ),
    ]
    with caplog.at_level(logging.WARNING, logger="python.data.mpower"):
        bundle = load_mpower(write_export(tmp_path, demo, records).parent, per_cell=1)
    expect = {
        "records skipped: corrupt JSON: 1": ["9901.json", "line 2", "r_corrupt"],
        "records skipped: missing tapping JSON file: 1": ["9902.json", "r_missing"],
        "records skipped: no taps: 1": ["9903.json", "r_empty"],
        "records skipped: healthCode without usable demographics: 3": ["hc_unknown", "r_nodemo", "r_badage", "r_nodx"],
        f"records skipped: empty {TAPPING_FILE_COLUMN}: 1": ["r_nohandle", "tapping.csv line"],
        "demographics rows skipped: missing or invalid age (integer 18-120): 3": ["'abc'", "'250'", "''"],
        "demographics rows skipped: missing or invalid professional-diagnosis (true/false): 1": ["line 20"],
        "malformed taps dropped (rest of the record kept): 1": ["9907.json", "r_badtap", "tap 3"],
    }
    for prefix, parts in expect.items():
        line = log_line(bundle, prefix)
        assert all(p in line for p in parts), (line, parts)
        assert any(r.message == line for r in caplog.records), line
    n = len(records)
    assert bundle.log[0].endswith(f"{n} records, {n - 7} usable, 7 skipped")
    assert find(bundle, s)[3].sum() == 3  # the record with one bad tap keeps its three good taps
    assert {r[1] for r in all_records(bundle)} == set(range(s + 1))  # nothing from the skipped records


def test_huge_or_implausible_tap_values_are_dropped_and_counted_and_features_stay_finite(tmp_path):
    demo, records, people = cohort()
    s = len(people)
    demo.append(("hc_extra", 40, "false"))
    good = make_taps([1.0, 1.2, 1.4], x=10 + s)
    bad = [
        {"TapTimeStamp": 1.6, "TapCoordinate": "{1e300, 5}", "TappedButtonId": "TappedButtonLeft"},
        {"TapTimeStamp": 1.7, "TapCoordinate": [5, -1e300], "TappedButtonId": "TappedButtonLeft"},
        {"TapTimeStamp": 1e300, "TapCoordinate": "{5, 5}", "TappedButtonId": "TappedButtonLeft"},
        {"TapTimeStamp": -3.0, "TapCoordinate": "{5, 5}", "TappedButtonId": "TappedButtonLeft"},
        {"TapTimeStamp": "1e400", "TapCoordinate": "{5, 5}", "TappedButtonId": "TappedButtonLeft"},
    ]
    huge_integer = json.dumps(good)[:-1] + ', {"TapTimeStamp": 1' + "0" * 400 + (
        ', "TapCoordinate": "{5, 5}", "TappedButtonId": "TappedButtonLeft"}]')
    records += [
        ("r_hostile", "hc_extra", 9950, good + bad),
        ("r_bigint", "hc0", 9951, huge_integer),
        ("r_digits", "hc0", 9952, "[" + "1" * 5000 + "]"),  # more digits than int() reads
        ("r_nested", "hc0", 9953, "[" * 100_000 + "]" * 100_000),  # deeper than the recursion limit
    ]
    bundle = load_mpower(write_export(tmp_path, demo, records).parent, per_cell=1)
    dropped = log_line(bundle, "malformed taps dropped (rest of the record kept): 6")
    assert "9950.json tap 3: TapCoordinate '{1e300, 5}' is outside +-10000 points" in dropped and "r_hostile" in dropped
    corrupt = log_line(bundle, "records skipped: corrupt JSON: 2")
    assert "9952.json" in corrupt and "9953.json: nested too deeply" in corrupt and "r_nested" in corrupt
    assert find(bundle, s)[3].sum() == 3  # the three good taps of the hostile record are kept
    for split in bundle.splits.values():
        assert torch.isfinite(split.inputs[0]).all()


@pytest.mark.parametrize(
    ("file", "column"),
    [
        ("tapping.csv", "healthCode"),
        ("tapping.csv", TAPPING_FILE_COLUMN),
        ("demographics.csv", "age"),
        ("demographics.csv", "professional-diagnosis"),
    ],
)
def test_missing_required_column(tmp_path, file, column):
    root = write_export(tmp_path, *cohort()[:2])
    path = root / file
    rows = list(csv.reader(path.open()))
    keep = [i for i, name in enumerate(rows[0]) if name != column]
    write_csv(path, [rows[0][i] for i in keep], [[r[i] for i in keep] for r in rows[1:]])
    with pytest.raises(ValueError, match=f"{file}.*missing required column '{column}'"):
        load_mpower(tmp_path, per_cell=1)


@pytest.mark.parametrize("missing", ["tapping.csv", "demographics.csv", "tapping_samples"])
def test_missing_files_raise_file_not_found(tmp_path, missing):
    root = write_export(tmp_path, *cohort()[:2])
    target = root / missing
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(FileNotFoundError, match=str(target).replace("\\", "\\\\")):
        load_mpower(tmp_path, per_cell=1)


def test_data_root_without_mpower_explains_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mpower/tapping.csv not found.*Omit --data-root"):
        load_mpower(tmp_path / "nothing_here")


def test_filehandle_map_relative_and_absolute_paths(tmp_path):
    demo, records, people = cohort(young=2)
    root = write_export(tmp_path, demo, records)
    (root / "elsewhere").mkdir()
    rows = []
    for k, (_, _, handle, _) in enumerate(records):
        src = root / "tapping_samples" / f"{handle}.json"
        dst = root / "elsewhere" / f"cache-{k}.tmp"
        src.rename(dst)
        rows.append([f"{handle}.0", dst if k % 2 else dst.relative_to(root)])
    (root / "tapping_samples").rmdir()
    write_csv(root / "filehandle_map.csv", ["fileHandleId", "path"], rows)
    bundle = load_mpower(tmp_path, per_cell=1)
    assert sorted(r[1] for r in all_records(bundle)) == list(range(len(people)))


def test_malformed_csv_line_names_file_and_line(tmp_path):
    root = write_export(tmp_path, *cohort()[:2])
    with (root / "demographics.csv").open("a") as f:
        f.write("99_0,dx,hc_x,40,Female,true,surplus\n")
    n_lines = len((root / "demographics.csv").read_text().splitlines())
    with pytest.raises(ValueError, match=f"demographics.csv line {n_lines}: malformed CSV row"):
        load_mpower(tmp_path, per_cell=1)
    with (root / "tapping.csv").open("a") as f:
        f.write('5_1,r,"unterminated\n')
    with pytest.raises(ValueError, match=r"tapping.csv line \d+: malformed CSV"):
        load_mpower(tmp_path, per_cell=1)


def test_every_record_unusable_raises(tmp_path):
    write_export(tmp_path, [("hc0", 50, "true")], [("r0", "hc0", 1, "not json"), ("r1", "hc9", 2, "[]")])
    with pytest.raises(ValueError, match=r"none of the 2 records.*corrupt JSON: 1.*healthCode without"):
        load_mpower(tmp_path, per_cell=1)


# ---------------------------------------------------------------------------------------------------------------------
# Splits


def test_test_split_is_age_balanced_and_subject_disjoint(tmp_path):
    demo, records, people = cohort(per_cell=4, young=20, max_records=3, seed=2)
    bundle = load_mpower(write_export(tmp_path, demo, records).parent, per_cell=3, val_fraction=0.25, split_seed=5)
    rows = all_records(bundle)
    subjects = {name: {r[1] for r in rows if r[0] == name} for name in ("train", "val", "test")}
    assert not subjects["train"] & subjects["val"] and not subjects["test"] & (subjects["train"] | subjects["val"])
    test = bundle.splits["test"]
    assert len(test) == len(subjects["test"]) == 3 * 2 * 6  # one record per test subject
    counts = torch.bincount(test.bias[:, 0] * 2 + test.y, minlength=16).view(8, 2)
    assert counts[:2].sum() == 0 and (counts[2:] == 3).all()
    for marker in subjects["train"] | subjects["val"]:  # every record of a pool subject stays with it
        n_written = sum(code == f"hc{marker}" for _, code, _, _ in records)
        assert sum(r[1] == marker for r in rows) == n_written
    pool = len(people) - 36
    assert len(subjects["val"]) == round(0.25 * pool) and len(subjects["train"]) == pool - round(0.25 * pool)
    assert bundle.test_is_bias_free and bundle.bias_classes == (8,) and bundle.bias_names == ("age",)
    again = load_mpower(tmp_path, per_cell=3, val_fraction=0.25, split_seed=5)
    assert torch.equal(again.splits["test"].inputs[0], test.inputs[0])
    other = load_mpower(tmp_path, per_cell=3, val_fraction=0.25, split_seed=6)
    assert not torch.equal(other.splits["test"].inputs[0], test.inputs[0])


def test_too_few_subjects_in_a_cell_names_the_cell(tmp_path):
    write_export(tmp_path, *cohort(per_cell=2)[:2])
    with pytest.raises(ValueError, match=r"age 45-49 PD: needs per_cell=3 subjects, only 2.*lower per_cell"):
        load_mpower(tmp_path, per_cell=3)


# ---------------------------------------------------------------------------------------------------------------------
# Simulated cohort


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    cache = tmp_path_factory.mktemp("sim")
    return cache, load_mpower(None, cache_dir=cache, cohort="quick")


def test_simulated_cohort_uses_the_same_loader(quick):
    cache, bundle = quick
    assert bundle.data_source == "simulated" and bundle.name == "mpower"
    spec = COHORTS["quick"]
    assert json.loads((cache / "quick" / "cohort.json").read_text())["n_subjects"] == spec.n_subjects
    direct = load_mpower(cache / "quick", per_cell=spec.per_cell)  # the cached files read as a data root
    assert direct.data_source == "simulated"
    for name, split in bundle.splits.items():
        assert torch.equal(split.inputs[0], direct.splits[name].inputs[0]) and torch.equal(
            split.y, direct.splits[name].y
        )
    test = bundle.splits["test"]
    assert (torch.bincount(test.bias[:, 0] * 2 + test.y, minlength=16).view(8, 2)[2:] == spec.per_cell).all()


def _subjects_per_bin_and_pd(root: Path) -> tuple[np.ndarray, set[str]]:
    """``(8, 2)`` subjects per (age bin, PD) of a cohort folder, and their codes, from its demographics.csv."""
    counts = np.zeros((8, 2), dtype=np.int64)
    with (root / "mpower" / "demographics.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        counts[mpower.age_bin(int(row["age"])), int(row["professional-diagnosis"] == "True")] += 1
    return counts, {row["healthCode"] for row in rows}


def test_unconfounded_training_draw_keeps_size_and_age_mix_and_makes_pd_independent_of_age(quick, tmp_path):
    cache, bundle = quick
    drawn = load_mpower(None, cache_dir=cache, cohort="quick", train_draw="unconfounded")
    for name in ("val", "test"):  # only the training split is replaced
        assert torch.equal(drawn.splits[name].inputs[0], bundle.splits[name].inputs[0])
        assert torch.equal(drawn.splits[name].y, bundle.splits[name].y)
    counts, codes = _subjects_per_bin_and_pd(cache / "quick_unconfounded_train")
    manifest = json.loads((cache / "quick_unconfounded_train" / "cohort.json").read_text())
    share = manifest["params"]["pd_share"][0]
    assert manifest["params"]["pd_share"] == [share] * 8 and 0.2 < share < 0.6
    per_bin = counts.sum(1)
    assert (np.abs(counts[:, 1] - share * per_bin) <= 1).all()  # the same PD share in every bin, up to rounding
    cohort_counts, cohort_codes = _subjects_per_bin_and_pd(cache / "quick")
    assert not codes & cohort_codes  # new subjects
    assert per_bin.sum() < cohort_counts.sum()  # the training split's subjects, not the whole cohort's
    assert abs(len(drawn.splits["train"]) - len(bundle.splits["train"])) <= 0.15 * len(bundle.splits["train"])
    train_bins = bundle.splits["train"].bias[:, 0]
    cohort_share = [bundle.splits["train"].y[train_bins == b].float().mean() for b in (0, 7)]
    assert cohort_share[0] < 0.2 < 0.5 < cohort_share[1]  # the cohort's training split is confounded
    with pytest.raises(ValueError, match="needs a simulated cohort"):
        load_mpower(write_export(tmp_path, *cohort()[:2]).parent, per_cell=1, train_draw="unconfounded")
    with pytest.raises(ValueError, match="train_draw must be one of"):
        load_mpower(None, cache_dir=cache, cohort="quick", train_draw="balanced")


def test_keep_subjects_keeps_whole_subjects_of_the_asked_share_reproducibly():
    codes = [f"s{i // 3}" for i in range(30)] + [f"t{i}" for i in range(10)]  # 10 subjects x 3 records, 10 x 1
    n = len(codes)
    split = Split((torch.arange(n, dtype=torch.float32).view(n, 1),), torch.arange(n) % 2,
                  torch.zeros(n, 1, dtype=torch.long))
    kept, kept_codes, note = keep_subjects(split, codes, 0.5, seed=0)
    assert len(set(kept_codes)) == 10 and "10 of 20 subjects kept" in note
    rows = kept.inputs[0][:, 0].long()
    assert [codes[i] for i in rows] == kept_codes and torch.equal(kept.y, rows % 2)
    for subject in set(kept_codes):  # every record of a kept subject, none of the others
        assert kept_codes.count(subject) == codes.count(subject)
    assert keep_subjects(split, codes, 0.5, seed=0)[1] == kept_codes
    assert keep_subjects(split, codes, 0.5, seed=1)[1] != kept_codes
    assert len(set(keep_subjects(split, codes, 0.01, seed=0)[1])) == 1  # at least one subject


def test_train_subjects_subsamples_only_the_training_split(quick):
    cache, bundle = quick
    half = load_mpower(None, cache_dir=cache, cohort="quick", train_subjects=0.5)
    for name in ("val", "test"):
        assert torch.equal(half.splits[name].inputs[0], bundle.splits[name].inputs[0])
    assert 0.3 * len(bundle.splits["train"]) < len(half.splits["train"]) < 0.7 * len(bundle.splits["train"])
    assert any("train subsampled (train_subjects 0.5)" in line for line in half.log)
    for bad in (0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match="train_subjects must be a share in"):
            load_mpower(None, cache_dir=cache, cohort="quick", train_subjects=bad)


def test_simulator_is_deterministic_given_seed(tmp_path):
    a, b, c = (simulate_cohort(tmp_path / n, 40, seed) for n, seed in (("a", 3), ("b", 3), ("c", 4)))
    for name in ("tapping.csv", "demographics.csv"):
        assert (a / "mpower" / name).read_bytes() == (b / "mpower" / name).read_bytes()
        assert (a / "mpower" / name).read_bytes() != (c / "mpower" / name).read_bytes()
    files = sorted(p.name for p in (a / "mpower" / "tapping_samples").iterdir())
    assert files == sorted(p.name for p in (b / "mpower" / "tapping_samples").iterdir())
    assert all(
        (a / "mpower" / "tapping_samples" / f).read_bytes() == (b / "mpower" / "tapping_samples" / f).read_bytes()
        for f in files
    )
    taps = json.loads((a / "mpower" / "tapping_samples" / files[0]).read_text())
    assert set(taps[0]) == {"TapTimeStamp", "TapCoordinate", "TappedButtonId"}
    assert taps[0]["TapCoordinate"].startswith("{") and taps[-1]["TapTimeStamp"] - taps[0]["TapTimeStamp"] < 20


def test_cache_reused_and_regenerated_when_params_differ(tmp_path, monkeypatch):
    calls = []
    real = mpower.simulator.simulate_cohort
    monkeypatch.setattr(mpower.cache, "simulate_cohort", lambda *a, **k: calls.append(a) or real(*a, **k))
    d = tmp_path / "cohort"
    prepare_simulated_cohort(d, 30, 1)
    stamp = (d / "mpower" / "tapping.csv").stat().st_mtime_ns
    prepare_simulated_cohort(d, 30, 1)
    assert len(calls) == 1 and (d / "mpower" / "tapping.csv").stat().st_mtime_ns == stamp
    prepare_simulated_cohort(d, 30, 1, replace(SimulatorParams(), pd_cv=0.3))
    assert len(calls) == 2 and json.loads((d / "cohort.json").read_text())["params"]["pd_cv"] == 0.3
    prepare_simulated_cohort(d, 30, 2, replace(SimulatorParams(), pd_cv=0.3))
    assert len(calls) == 3 and json.loads((d / "cohort.json").read_text())["seed"] == 2
    # no temporary folders left behind; the generation lock's file stays (removing it would race a waiting process)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cohort.lock", "cohort"]


def test_concurrent_preparations_generate_once_and_never_replace_a_finished_cohort(tmp_path, monkeypatch):
    calls = []
    real = mpower.simulator.simulate_cohort

    def slow(*args, **kwargs):
        calls.append(args)
        time.sleep(0.3)  # both threads ask while the first generation runs
        return real(*args, **kwargs)

    monkeypatch.setattr(mpower.cache, "simulate_cohort", slow)
    d = tmp_path / "cohort"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: prepare_simulated_cohort(d, 30, 1), range(2)))
    assert results == [d, d] and len(calls) == 1
    assert (d / "cohort.json").is_file() and (d / "mpower" / "tapping.csv").is_file()


def test_interrupted_generation_is_not_reused(tmp_path, monkeypatch):
    real = mpower.simulator.simulate_cohort

    def crash(out_dir, *args, **kwargs):
        real(out_dir, *args, **kwargs)
        (Path(out_dir) / "mpower" / "tapping.csv").write_text("half")
        raise KeyboardInterrupt

    d = tmp_path / "cohort"
    monkeypatch.setattr(mpower.cache, "simulate_cohort", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_simulated_cohort(d, 30, 1)
    assert not d.exists() and [p.name for p in tmp_path.iterdir()] == [".cohort.lock"]
    d.mkdir()  # a leftover folder without a manifest is regenerated too
    (d / "junk").write_text("x")
    monkeypatch.setattr(mpower.cache, "simulate_cohort", real)
    prepare_simulated_cohort(d, 30, 1)
    assert not (d / "junk").exists() and (d / "cohort.json").is_file()


def test_load_mpower_reuses_cache(quick, monkeypatch):
    cache, _ = quick
    monkeypatch.setattr(mpower.cache, "simulate_cohort", lambda *a, **k: pytest.fail("cohort regenerated"))
    assert load_mpower(None, cache_dir=cache, cohort="quick").data_source == "simulated"


def test_default_cohort_fills_every_test_cell():
    counts = mpower.simulator._cell_counts(COHORTS["default"].n_subjects, SimulatorParams())
    assert counts.sum() == COHORTS["default"].n_subjects
    assert counts[2:].min() >= 45, {AGE_BIN_NAMES[b]: counts[b].tolist() for b in range(8)}


def test_age_shortcut_in_simulated_training_split(quick):
    _, bundle = quick

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])

    train, test = bundle.splits["train"], bundle.splits["test"]
    assert corr(train.bias[:, 0], train.y) > 0.3
    assert abs(corr(test.bias[:, 0], test.y)) < 1e-9
    controls = train.y == 0
    interval = hand_features(*train.inputs)["mean_interval"]
    assert corr(train.bias[controls, 0], interval[controls]) > 0.3  # age slows everyone's tapping
    young, old = interval[controls & (train.bias[:, 0] <= 1)], interval[controls & (train.bias[:, 0] >= 6)]
    assert old.mean() > 1.2 * young.mean()
    off_target = hand_features(*train.inputs)["off_target"]  # where taps land carries age (version 3)
    old_controls, young_controls = controls & (train.bias[:, 0] >= 6), controls & (train.bias[:, 0] <= 1)
    assert off_target[old_controls].mean() > 3 * off_target[young_controls].mean()
    feats = hand_features(*test.inputs)  # PD's own signs, at matched ages
    for name in ("cv", "freezes"):
        assert feats[name][test.y == 1].mean() > feats[name][test.y == 0].mean(), name
    auc = shortcut_check(bundle)
    assert auc["age bin only"][0] > 0.65 and auc["age bin only"][1] == 0.5
    speed_val, speed_test = auc["speed only (mean interval, n taps)"]  # PD slows tapping, and age inflates that
    assert speed_val > speed_test + 0.1 and speed_test > 0.55
    assert auc["all hand features"][1] > 0.6  # PD's own signs are learnable at matched ages


def test_simulated_ageing_mimics_pd_slowing_and_irregularity_and_steepens_after_60():
    p = SimulatorParams()

    def mean_subject(age: int, pd: bool) -> tuple[float, float]:
        rng = np.random.default_rng(0)
        subjects = [mpower.simulator._make_subject(rng, age, pd, p) for _ in range(400)]
        return float(np.mean([s.interval for s in subjects])), float(np.mean([s.cv for s in subjects]))

    (i40, c40), (i60, c60), (i80, c80) = (mean_subject(a, False) for a in (40, 60, 80))
    assert i40 < i60 < i80 and c40 < c60 < c80  # ageing slows tapping and makes it less regular
    assert i80 / i60 > i60 / i40 and c80 - c60 > c60 - c40  # ... faster past 60
    pd_interval, pd_cv = mean_subject(60, True)
    assert pd_interval > i60 and pd_cv > c60  # Parkinson's does both too (bradykinesia, irregular rhythm)
