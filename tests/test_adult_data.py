"""UCI Adult: the loader on the shipped UCI files and on broken copies, downloads, and the SenSR metrics."""

from __future__ import annotations

import gzip
import io
import math
import re
import threading
import urllib.error
from pathlib import Path

import pytest
import torch

from python.adult_metrics import METRIC_KEYS, adult_metrics, gender_race_consistency, spouse_consistency
from python.data import adult
from python.data.adult import ADULT_FEATURES, CONTINUOUS, SHA256, SHIPPED_DIR, download_adult, load_adult, split_indices

N_ROWS = 45_222


@pytest.fixture(scope="module")
def bundle():
    return load_adult(None, split=0, bias="both")


def _all(b) -> tuple[torch.Tensor, torch.Tensor]:
    splits = [b.splits[s] for s in ("train", "val", "test")]
    return torch.cat([s.inputs[0] for s in splits]), torch.cat([s.y for s in splits])


# ----------------------------------------------------------------------------------------------------------------------
# The real files


def test_rows_features_and_labels(bundle):
    x, y = _all(bundle)
    assert x.shape == (N_ROWS, 41) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(ADULT_FEATURES) == 41 == len(set(ADULT_FEATURES))
    assert float(y.double().mean()) == pytest.approx(0.248, abs=1e-3)  # 11,208 of 45,222 earn >50K
    assert bundle.name == "adult" and bundle.data_source == "real" and bundle.n_classes == 2
    assert not bundle.test_is_bias_free and bundle.tolerance == 0
    assert any("3620" in line or "45222 of 48842" in line for line in bundle.log)
    assert all("matches the UCI release" in line for line in bundle.log if "sha256" in line)


def test_feature_layout_matches_sensr(bundle):
    """SenSR's get_consistency uses relationship_* = columns 33-38 (Husband 33, Wife 38), sex 39, race 40."""
    assert ADULT_FEATURES[:5] == CONTINUOUS
    assert [ADULT_FEATURES.index(f) for f in ("relationship_Husband", "relationship_Wife", "sex_Male")] == [33, 38, 39]
    assert ADULT_FEATURES[40] == "race_White"
    x, _ = _all(bundle)
    one_hot = x[:, 5:]
    assert bool(((one_hot == 0) | (one_hot == 1)).all())
    for group in ("workclass", "marital-status", "occupation", "relationship"):
        cols = [i for i, f in enumerate(ADULT_FEATURES) if f.startswith(group + "_")]
        assert torch.equal(x[:, cols].sum(1), torch.ones(N_ROWS)), group


def test_standardised_on_train(bundle):
    train = bundle.splits["train"].inputs[0][:, :5].double()
    assert torch.allclose(train.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(5, dtype=torch.float64), atol=1e-5)
    test = bundle.splits["test"].inputs[0][:, :5].double()
    assert test.mean(0).abs().max() < 0.1 and (test.std(0) - 1).abs().max() < 0.15


def test_splits_deterministic_and_distinct():
    n = N_ROWS
    a, b, c = split_indices(n, 0), split_indices(n, 0), split_indices(n, 1)
    assert [len(a[s]) for s in ("train", "val", "test")] == [32_559, 3_618, 9_045]
    assert all(torch.equal(torch.from_numpy(a[s]), torch.from_numpy(b[s])) for s in a)
    assert sorted(set(a["train"]) | set(a["val"]) | set(a["test"])) == list(range(n))
    assert set(a["test"]) != set(c["test"])
    first, again = load_adult(None, split=3), load_adult(None, split=3)
    assert torch.equal(first.splits["val"].inputs[0], again.splits["val"].inputs[0])
    assert not torch.equal(first.splits["test"].y, load_adult(None, split=4).splits["test"].y)


@pytest.mark.parametrize(
    ("bias", "columns", "names"),
    [
        ("gender", ["sex_Male"], ("gender",)),
        ("race", ["race_White"], ("race",)),
        ("both", ["sex_Male", "race_White"], ("gender", "race")),
    ],
)
def test_bias_columns(bias, columns, names):
    b = load_adult(None, split=2, bias=bias)
    assert b.bias_names == names and b.bias_classes == (2,) * len(names)
    for split in b.splits.values():
        assert split.bias.shape == (len(split), len(names)) and split.bias.dtype == torch.int64
        expected = split.inputs[0][:, [ADULT_FEATURES.index(c) for c in columns]].long()
        assert torch.equal(split.bias, expected)


def test_sha256_constants_match_readme():
    readme = (SHIPPED_DIR / "README.md").read_text(encoding="utf-8")
    for name, digest in SHA256.items():
        assert re.search(rf"{re.escape(name)}\b.*\b{digest}\b", readme), name


def test_shipped_copy_is_inside_the_package():
    """The default copy is part of the package (no ../shared): gzip files, licence and citation beside them."""
    package = Path(adult.__file__).resolve().parent
    assert SHIPPED_DIR.is_relative_to(package) and "shared" not in SHIPPED_DIR.relative_to(package).parts
    for name in (*adult.FILES, "adult.names"):
        assert (SHIPPED_DIR / f"{name}.gz").is_file(), name
    readme = (SHIPPED_DIR / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "Becker" in readme and "Kohavi" in readme and "10.24432/C5XW20" in readme


def test_damaged_shipped_copy_is_refused(tmp_path, monkeypatch):
    for name in adult.FILES:
        data = adult.read_file(SHIPPED_DIR, name)
        if name == "adult.data":
            data = data.replace(b"Bachelors", b"Bachelorz", 1)  # still parses: only the checksum tells
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(data))
    monkeypatch.setattr(adult, "SHIPPED_DIR", tmp_path.resolve())
    with pytest.raises(ValueError, match=r"shipped copy .*adult\.data\.gz is damaged: sha256"):
        load_adult(None)


def test_gzip_files_under_data_root(tmp_path):
    folder = _small_copy(tmp_path)
    for name in adult.FILES:
        (folder / f"{name}.gz").write_bytes(gzip.compress((folder / name).read_bytes()))
        (folder / name).unlink()
    assert sum(len(s) for s in load_adult(tmp_path, split=5).splits.values()) == 90


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_adult(None, split=10)
    with pytest.raises(ValueError, match="bias"):
        load_adult(None, bias="age")
    with pytest.raises(ValueError, match=r"download=True \(--download\) needs a data_root \(--data-root DIR\)"):
        load_adult(None, download=True)


# ----------------------------------------------------------------------------------------------------------------------
# Small and broken copies in tmp_path


def _small_copy(root: Path, n_data: int = 60, n_test: int = 40) -> Path:
    """``root/adult/`` with the first lines of the real files (adult.test keeps its '|1x3' header line)."""
    folder = root / "adult"
    folder.mkdir(parents=True)
    for name, n in (("adult.data", n_data), ("adult.test", n_test + 1)):
        lines = adult.read_file(SHIPPED_DIR, name).decode("utf-8").splitlines(keepends=True)[:n]
        (folder / name).write_text("".join(lines), encoding="utf-8")
    return folder


def test_small_copy_drops_and_counts(tmp_path):
    _small_copy(tmp_path)
    b = load_adult(tmp_path, split=5)
    n = sum(len(s) for s in b.splits.values())
    assert n == 100 - 10  # '?' in occupation or native-country: adult.data lines 15, 28, 39, 52 and 6 test rows
    assert any(line.startswith("rows dropped: '?' in occupation:") for line in b.log)
    assert any("adult.test: 40 rows, 1 blank or '|' comment lines skipped" in line for line in b.log)
    assert "data root" in b.description and str(tmp_path) in b.description


def test_missing_file_names_path(tmp_path):
    folder = _small_copy(tmp_path)
    (folder / "adult.test").unlink()
    with pytest.raises(FileNotFoundError, match=r"adult\.test not found.*pass --download .* omit --data-root") as info:
        load_adult(tmp_path)
    assert "download=True" not in str(info.value) and "shared" not in str(info.value)  # the CLI's words


def _short_row(line: str) -> str:
    return ",".join(line.split(",")[:5]) + "\n"


def _bad_age(line: str) -> str:
    return "abc" + line[line.index(",") :]


def _bad_label(line: str) -> str:
    return line.replace("<=50K", "<=60K")


def _field(column: str, value: str):
    def edit(line: str) -> str:
        fields = line.rstrip("\n").split(",")
        fields[adult.COLUMNS.index(column)] = f" {value}"
        return ",".join(fields) + "\n"

    return edit


@pytest.mark.parametrize(
    ("name", "line", "edit", "message"),
    [
        ("adult.data", 3, _short_row, r"adult\.data line 3: 5 comma-separated fields, expected 15"),
        ("adult.test", 4, _bad_age, r"adult\.test line 4: age 'abc' is not a number"),
        ("adult.test", 2, _bad_label, r"adult\.test line 2: income '<=60K' is not one of"),
        # huge but finite: once silently inf/NaN features or a zeroed column after standardisation
        ("adult.data", 7, _field("age", "1e308"), r"adult\.data line 7: age '1e308' is outside .* 0\.\.150"),
        ("adult.data", 8, _field("capital-gain", "1e200"), r"adult\.data line 8: capital-gain '1e200' is outside"),
        ("adult.test", 3, _field("hours-per-week", "-4"), r"adult\.test line 3: hours-per-week '-4' is outside"),
        ("adult.test", 5, _field("capital-loss", "inf"), r"adult\.test line 5: capital-loss 'inf' is not a number"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, name, line, edit, message):
    folder = _small_copy(tmp_path)
    lines = (folder / name).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = edit(lines[line - 1])
    (folder / name).write_text("".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_adult(tmp_path)


# ----------------------------------------------------------------------------------------------------------------------
# Downloads (urlopen monkeypatched: no network)


def test_download_offline_fails_fast(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(
        RuntimeError, match=r"cannot download https://archive\.ics\.uci\.edu/\S+adult\.data.*--data-root"
    ):
        load_adult(tmp_path, download=True)
    assert list((tmp_path / "adult").iterdir()) == []


def test_download_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: io.BytesIO(b"<html>moved</html>"))
    with pytest.raises(RuntimeError, match=r"adult\.data has sha256 [0-9a-f]{64}, expected 5b0026"):
        download_adult(tmp_path / "adult")
    assert list((tmp_path / "adult").iterdir()) == []  # nothing written, no temp file left


def test_download_deadline(tmp_path, monkeypatch):
    release = threading.Event()

    def stuck(url, timeout):
        release.wait(5)
        raise urllib.error.URLError("released")

    monkeypatch.setattr("urllib.request.urlopen", stuck)
    try:
        with pytest.raises(RuntimeError, match=r"took more than"):
            download_adult(tmp_path, deadline=0.2)
    finally:
        release.set()


def test_download_writes_verified_files(tmp_path, monkeypatch):
    folder = tmp_path / "adult"
    folder.mkdir()
    (folder / "adult.data").write_bytes(adult.read_file(SHIPPED_DIR, "adult.data"))  # present ones are not fetched
    fetched = []

    def serve(url, timeout):
        fetched.append(url)
        assert timeout == adult.DOWNLOAD_TIMEOUT_S
        return io.BytesIO(adult.read_file(SHIPPED_DIR, url.rsplit("/", 1)[1]))

    monkeypatch.setattr("urllib.request.urlopen", serve)
    log = download_adult(folder)
    assert fetched == [adult.URL_BASE + "adult.test"] and "sha256 ok" in log[0]
    assert (folder / "adult.test").read_bytes() == adult.read_file(SHIPPED_DIR, "adult.test")


# ----------------------------------------------------------------------------------------------------------------------
# Metrics on hand-computed cases

NAMES = ("age", "relationship_Husband", "relationship_Own-child", "relationship_Wife", "sex_Male", "race_White")


def _x(age, husband, child, wife, sex, race) -> torch.Tensor:
    return torch.tensor([age, husband, child, wife, sex, race], dtype=torch.float32).T


def test_spouse_consistency_hand_cases():
    x = _x([0, 1, 2, 3], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0])
    husband = lambda v: (v[:, 1] > 0.5).long()  # noqa: E731
    assert spouse_consistency(husband, x, NAMES) == 0.0  # husband copy -> 1, wife copy -> 0 for everyone
    child = lambda v: (v[:, 2] > 0.5).long()  # noqa: E731
    assert spouse_consistency(child, x, NAMES) == 1.0  # other relationship columns are zeroed in both copies
    male_wife = lambda v: (v[:, 3] * v[:, 4] > 0.5).long()  # noqa: E731
    assert spouse_consistency(male_wife, x, NAMES) == 0.5  # sex unchanged: differs only for samples 0 and 3


def test_gender_race_consistency_hand_cases():
    x = _x([0, 1, 2, 1], [0] * 4, [0] * 4, [0] * 4, [0, 0, 1, 1], [1, 0, 1, 0])
    age_and_sex = lambda v: (v[:, 0] + v[:, 4] > 1.5).long()  # noqa: E731
    assert gender_race_consistency(age_and_sex, x, NAMES) == 0.5  # age 1 flips with sex, ages 0 and 2 do not
    race_only = lambda v: (v[:, 5] > 0.5).long()  # noqa: E731
    assert gender_race_consistency(race_only, x, NAMES) == 0.0
    age_only = lambda v: (v[:, 0] > 0.5).long()  # noqa: E731
    assert gender_race_consistency(age_only, x, NAMES) == 1.0


def test_adult_metrics_hand_case():
    # the age column carries the prediction; sex / race / y chosen so that every rate differs
    pred = [1, 1, 0, 1, 1, 0, 0, 1]
    sex, race = [1, 1, 1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0, 1, 0]
    y = torch.tensor([1, 1, 0, 0, 1, 1, 0, 0])
    x = _x(pred, [1, 0, 0, 0, 0, 0, 1, 0], [0, 1, 0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 1, 0, 0], sex, race)
    out = adult_metrics(lambda v: (v[:, 0] > 0.5).long(), x, y, NAMES)
    assert tuple(out) == METRIC_KEYS
    # overall TPR 3/4, TNR 2/4; male TPR 1 TNR 1/2, female TPR 1/2 TNR 1/2; white TPR 1 TNR 1, other TPR 1/2 TNR 0
    assert out["balanced_accuracy"] == pytest.approx(0.625)
    assert out["gap_rms_gender"] == pytest.approx(math.sqrt(0.5 * 0.25))
    assert out["gap_max_gender"] == pytest.approx(0.5)
    assert out["gap_rms_race"] == pytest.approx(math.sqrt(0.5 * (0.25 + 1.0)))
    assert out["gap_max_race"] == pytest.approx(1.0)
    assert out["s_con"] == 1.0 and out["gr_con"] == 1.0


def test_adult_metrics_checks_inputs():
    x = _x([0, 1], [1, 0], [0, 1], [0, 0], [1, 0], [0, 1])
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="feature_names lacks 'race_White'"):
        adult_metrics(lambda v: v[:, 0].long(), x[:, :5], y, NAMES[:5])
    with pytest.raises(ValueError, match="0/1 labels"):
        adult_metrics(lambda v: v[:, 0].long() + 2, x, y, NAMES)
    with pytest.raises(ValueError, match="shape"):
        adult_metrics(lambda v: v[:, :2].long(), x, y, NAMES)
    nan_gap = adult_metrics(lambda v: v[:, 0].long(), x, y, NAMES)["gap_rms_gender"]
    assert math.isnan(nan_gap)  # the male group has no positive sample: its TPR is undefined


def test_adult_metrics_on_real_test_split(bundle):
    test = bundle.splits["test"]
    x, y = test.inputs[0], test.y
    husband = ADULT_FEATURES.index("relationship_Husband")
    out = adult_metrics(lambda v: (v[:, husband] > 0.5).long(), x, y)
    assert out["s_con"] == 0.0 and out["gr_con"] == 1.0
    assert 0.5 < out["balanced_accuracy"] < 1 and out["gap_max_gender"] > 0.5  # husbands are all male
