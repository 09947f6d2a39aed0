"""Run configuration: every key is typed from TrainConfig's annotations, a wrong type is an error naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import python.train as train_cli
from python import config as cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("text", "key"), [
    ('quick: "false"', "quick"),  # a string, which bool() would read as true
    ('baseline: "false"', "baseline"),
    ('lr: "abc"', "lr"),
    ('seed: "abc"', "seed"),
    ("lr: [0.1]", "lr"),
    ("out: 5", "out"),
    ('c: "0.5"', "c"),
    ("lambda: .inf", "lambda"),
    ("lr: .nan", "lr"),
    ("seed: true", "seed"),
    ("epochs: 2.0", "epochs"),
    ("max_images: 3.5", "max_images"),
    ("download: 1", "download"),
    ("dataset: 3", "dataset"),
])
def test_a_config_value_of_the_wrong_type_is_an_error_naming_the_key(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=rf"^config file {path}: {key} must be .*, got "):
        cfg.read_config_file(path)


def test_values_of_the_right_type_pass_and_ints_count_as_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1\nlambda: 2.5\nquick: false\nbaseline: false\nout: null\nmax_images: 10\nseed: 4\n")
    config = cfg.resolve({}, cfg.read_config_file(path))
    assert (config.lr, config.lambda_, config.quick, config.baseline, config.out, config.max_images, config.seed) == (
        1, 2.5, False, False, None, 10, 4)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("lambda_", float("inf"), "lambda must be a finite number, got inf"),
    ("lr", float("nan"), "lr must be a finite number, got nan"),
    ("tau", float("inf"), "tau must be a finite number"),
    ("seed", -1, r"seed must be an int in 0..2\*\*63-1"),
])
def test_non_finite_and_out_of_range_flags_are_refused(name, value, message):
    with pytest.raises(ValueError, match=message):
        cfg.resolve({name: value})


def test_lambda_inf_on_the_command_line_is_refused_before_anything_is_read():
    with pytest.raises(ValueError, match="lambda must be a finite number"):
        train_cli.settings(["--lambda", "inf"])


def test_a_hand_edited_saved_config_is_checked_too(tmp_path):
    path = tmp_path / "config.yaml"
    cfg.save(cfg.TrainConfig(), path)
    assert cfg.load_saved(path) == cfg.TrainConfig()
    path.write_text(path.read_text().replace("quick: false", 'quick: "false"'))
    with pytest.raises(ValueError, match="quick must be true or false"):
        cfg.load_saved(path)
    cfg.save(cfg.TrainConfig(c=1.5), path)
    with pytest.raises(ValueError, match=rf"{path}: c must lie in \(0, 1\)"):
        cfg.load_saved(path)


def test_the_cli_reports_a_wrong_type_in_one_line_before_reading_data(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('c: "0.5"\n')
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "python.train", "--quick", "--config", str(path), "--out",
                           str(tmp_path / "run"), "--cache-dir", str(cache)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: config file {path}: c must be a finite number, got '0.5' (str)"
    assert not cache.exists() and not (tmp_path / "run").exists()
