"""DeepMinMax (DESIGN §6): the CLUB bound, the retaining term, leakage reduction and the post-processing CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from python import postprocess
from python.config import TrainConfig
from python.deepminmax import CLUB, DeepMinMax
from python.metrics import bias_leakage


def fitted_club(z: torch.Tensor, b: torch.Tensor, steps: int = 200) -> float:
    """CLUB estimate after fitting q(b|z) by maximum likelihood; categorical for int ``b``, Gaussian for float."""
    torch.manual_seed(0)
    club = CLUB(z.shape[1], None if b.is_floating_point() else [int(b.max()) + 1])
    opt = torch.optim.Adam(club.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        (-club.log_likelihood(z, b)).backward()
        opt.step()
    with torch.no_grad():
        return float(club(z, b))


def test_club_categorical_ordering() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(800, 3, generator=gen)
    independent = fitted_club(z, torch.randint(0, 3, (800,), generator=gen))
    dependent = fitted_club(z, torch.bucketize(z[:, 0].contiguous(), torch.tensor([-0.5, 0.5])))
    assert abs(independent) < 0.3
    assert dependent > 1.0 > independent + 0.5


def test_club_gaussian_ordering() -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(800, 3, generator=gen)
    independent = fitted_club(z, torch.randn(800, generator=gen))
    dependent = fitted_club(z, z[:, 0] + 0.3 * torch.randn(800, generator=gen))
    assert abs(independent) < 1.0  # in-sample q overfits a little
    assert dependent > independent + 3.0


def test_club_shapes_several_columns() -> None:
    z = torch.randn(64, 5)
    b = torch.stack([torch.randint(0, 2, (64,)), torch.randint(0, 4, (64,))], 1)
    club = CLUB(5, [2, 4])
    assert club(z, b).shape == () and club.log_likelihood(z, b).shape == ()
    model = DeepMinMax.for_data(z, b)
    assert model.classes == (2, 4)
    model.fit(z, b, epochs=1)
    assert model.transform(z).shape == (64, 5)
    continuous = DeepMinMax.for_data(z, torch.randn(64, 2))
    assert continuous.classes is None
    continuous.fit(z, torch.randn(64, 2), epochs=1)


def synthetic_features(seed: int, n: int = 1000, dim: int = 16) -> tuple[torch.Tensor, ...]:
    """Standardised z (n, dim): a target direction (y = ±1 + noise), a bias direction (b = ±1 + noise) and noise,
    rotated so that no single coordinate carries either; returns z, y, b."""
    gen = torch.Generator().manual_seed(seed)
    y, b = torch.randint(0, 2, (n,), generator=gen), torch.randint(0, 2, (n,), generator=gen)
    z = torch.cat([(2 * y - 1).float().unsqueeze(1) + 0.5 * torch.randn(n, 1, generator=gen),
                   (2 * b - 1).float().unsqueeze(1) + 0.5 * torch.randn(n, 1, generator=gen),
                   torch.randn(n, dim - 2, generator=gen)], 1)
    z = z @ torch.linalg.qr(torch.randn(dim, dim, generator=gen))[0]
    return (z - z.mean(0)) / z.std(0), y, b


def held_out_r2(zt: torch.Tensor, z: torch.Tensor, n_train: int) -> float:
    """R² of the least-squares reconstruction of z from [zt, 1], fitted on the first n_train rows: 0 = a constant."""
    x = torch.cat([zt, torch.ones(len(zt), 1)], 1)
    w = torch.linalg.lstsq(x[:n_train], z[:n_train]).solution
    residual = (x[n_train:] @ w - z[n_train:]).square().sum()
    return float(1 - residual / (z[n_train:] - z[n_train:].mean(0)).square().sum())


def debiased(seed: int, lambda_: float) -> tuple[torch.Tensor, ...]:
    z, y, b = synthetic_features(seed)
    torch.manual_seed(seed)
    model = DeepMinMax.for_data(z, b, lambda_=lambda_)
    model.fit(z[:N_TRAIN], b[:N_TRAIN], epochs=80, seed=seed)
    return z, model.transform(z), y, b


N_TRAIN = 700


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retaining_term_prevents_the_collapse(seed: int) -> None:
    """λ = 1 (CLUB alone) drives Z̃ towards a constant; λ = 0.5 keeps Z̃ informative about Z.

    (Linear decodability of the target is not asserted: m_φ can read a non-linearly folded Z̃, and on this synthetic
    case a downstream logistic regression on Z̃ at λ = 0.5 ranged 0.72-0.87 against 0.98 on Z over seeds.)"""
    z, collapsed, _, _ = debiased(seed, 1.0)
    _, retained, _, _ = debiased(seed, 0.5)
    r2_collapsed, r2_retained = held_out_r2(collapsed, z, N_TRAIN), held_out_r2(retained, z, N_TRAIN)
    assert r2_collapsed < 0.25 and r2_retained > r2_collapsed + 0.2, (r2_collapsed, r2_retained)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deepminmax_reduces_bias_leakage(seed: int) -> None:
    z, retained, _, b = debiased(seed, 0.5)
    before = bias_leakage(z[N_TRAIN:], b[N_TRAIN:])["accuracy"]
    after = bias_leakage(retained[N_TRAIN:], b[N_TRAIN:])["accuracy"]
    assert before > 0.9 and after < before - 0.15, (before, after)


def test_q_steps_validated() -> None:
    with pytest.raises(ValueError, match="q_steps"):
        DeepMinMax(4, [2], q_steps=0)


def write_npz(path: Path, n: int = 300, **override: np.ndarray) -> Path:
    r = np.random.default_rng(0)
    y, b = r.integers(0, 2, n), r.integers(0, 2, n)
    z = np.stack([2 * y - 1 + 0.5 * r.standard_normal(n), 2 * b - 1 + 0.5 * r.standard_normal(n),
                  r.standard_normal(n)], 1).astype(np.float32)
    arrays = {"z": z, "b": b, "y": y, **override}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_cli_quick_with_features(tmp_path: Path) -> None:
    features = write_npz(tmp_path / "f.npz", split=np.array(["train"] * 200 + ["test"] * 100))
    out = tmp_path / "out"
    metrics = postprocess.main(["--method", "deepminmax", "--dataset", "adult", "--features", str(features),
                                "--quick", "--out", str(out), "--seed", "3", "--embedding", "pca", "--no-progress"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["source"] == "features" and saved["epochs"] == 5 and saved["seed"] == 3
    assert saved["n_train"] == 200 and saved["n_test"] == 100 and saved["lambda"] == 0.5
    for when in ("before", "after"):
        assert {"accuracy", "auc", "bias_leakage"} <= set(saved[when])
        assert "b" in saved[when]["bias_leakage"]
    assert metrics["before"]["bias_leakage"]["b"]["accuracy"] > 0.9
    assert (out / "embedding.png").stat().st_size > 1000


def test_pt_features_and_default_split(tmp_path: Path) -> None:
    path = tmp_path / "f.pt"
    torch.save({"z": torch.randn(50, 3), "b": torch.randint(0, 2, (50, 2)), "y": torch.randint(0, 3, (50,))}, path)
    data = postprocess.load_features(path, seed=0)
    assert data["b"].shape == (50, 2) and int(data["is_train"].sum()) == 35


@pytest.mark.parametrize(("override", "message"), [
    ({"y": None}, "missing key 'y'"),
    ({"b": np.zeros(10, dtype=np.int64)}, "mismatched n"),
    ({"z": np.full((300, 3), np.nan, dtype=np.float32)}, "non-finite"),
    ({"z": np.zeros(300, dtype=np.float32)}, "2-D float"),
    ({"split": np.array(["train"] * 299 + ["val"])}, "split values"),
])
def test_bad_feature_files_rejected(tmp_path: Path, override: dict, message: str) -> None:
    path = write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(ValueError, match=message) as info:
        postprocess.load_features(path)
    assert str(path) in str(info.value)


def test_pt_not_a_dict_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(ValueError, match="dict") as info:
        postprocess.load_features(path)
    assert str(path) in str(info.value)


def test_help_names_every_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        postprocess.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--features", "--run", "--quick", "--out", "--epochs", "--lambda", "--seed", "--dataset",
                 "--data-root", "--download", "--split", "--bias", "--cache-dir"):
        assert flag in text


def test_data_flags_reach_the_trained_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-root (and the train CLI's other data flags) go to the baseline's training run."""
    with pytest.raises(FileNotFoundError, match=r"adult\.data not found.*--download"):
        postprocess.main(["--dataset", "adult", "--quick", "--data-root", str(tmp_path / "none"),
                          "--out", str(tmp_path / "post")])
    seen: list[Any] = []
    monkeypatch.setattr("python.train.run_training", lambda config, options: seen.append(config) or {})
    postprocess.train_baseline("adult", tmp_path / "p", False, 0, postprocess.data_settings(
        postprocess.parser().parse_args(["--data-root", "D", "--download", "--split", "3", "--bias", "race",
                                         "--cache-dir", "C"])))
    config = seen[0]
    assert (config.dataset, config.method, config.baseline) == ("adult", "baseline", False)
    assert (config.data_root, config.split, config.bias, config.cache_dir) == ("D", 3, "race", "C")
    assert config.download and config.sigma2 == TrainConfig().sigma2  # not given: the default


def test_summarize_groups_postprocess_results_by_folder(tmp_path: Path) -> None:
    from python import summarize

    def result(seed: int, acc_after: float, leak_after: float) -> dict:
        leak = {"g": {"accuracy": 0.9, "balanced_accuracy": 0.95, "chance_balanced_accuracy": 0.5}}
        after = {"g": {"accuracy": leak_after, "balanced_accuracy": leak_after, "chance_balanced_accuracy": 0.5}}
        return {"seed": seed, "before": {"accuracy": 0.8, "bias_leakage": leak},
                "after": {"accuracy": acc_after, "bias_leakage": after}}

    for seed, acc, leak in ((0, 0.70, 0.50), (1, 0.74, 0.60)):
        folder = tmp_path / "post" / f"adult_baseline_seed{seed}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(result(seed, acc, leak)))
    text = summarize.main([str(tmp_path / "post")])
    assert "| adult_baseline before | 0,1 | 0.800 ± 0.000 |  | 0.950 ± 0.000 |" in text
    assert "| adult_baseline after | 0,1 | 0.720 ± 0.028 |  | 0.550 ± 0.071 |" in text
    train_run = tmp_path / "post" / "run" / "metrics.json"
    train_run.parent.mkdir()
    train_run.write_text(json.dumps({"method": "csad", "seed": 0, "metrics": {}}))
    with pytest.raises(ValueError, match="mix"):
        summarize.main([str(tmp_path / "post")])


def test_cli_trains_the_baseline_first_and_reads_a_run(tmp_path: Path) -> None:
    out = tmp_path / "post"
    common = ["--method", "deepminmax", "--dataset", "adult", "--quick", "--embedding", "pca", "--no-progress"]
    trained = postprocess.main([*common, "--out", str(out)])
    assert trained["source"] == "trained baseline" and (out / "encoder" / "metrics.json").is_file()
    assert set(trained["before"]["bias_leakage"]) == {"gender"}  # adult's default --bias
    again = postprocess.main([*common, "--run", str(out / "encoder"), "--out", str(tmp_path / "again")])
    assert again["source"] == "run" and again["input"] == str(out / "encoder")
    assert again["before"] == trained["before"]  # the same frozen features, probed the same way
