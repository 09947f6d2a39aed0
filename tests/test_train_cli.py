"""The main job as users run it: ``python -m python.train`` in a subprocess, killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def train_command(out: Path, cache: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "python.train", "--dataset", "mpower", "--quick", "--no-progress",
            "--out", str(out), "--cache-dir", str(cache), *flags]


def run_to_end(command: list[str]) -> dict:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(Path(command[command.index("--out") + 1], "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, Path]:
    base = tmp_path_factory.mktemp("quick")
    return run_to_end(train_command(base / "run", base / "cache")), base / "cache"


def test_quick_main_job_runs_every_phase_and_prints_the_table(uninterrupted):
    metrics, _ = uninterrupted
    assert metrics["dataset"] == "mpower" and metrics["method"] == "csad" and metrics["data_source"] == "simulated"
    assert metrics["baseline"]["method"] == "baseline"
    assert set(metrics["metrics"]["test"]) >= {"auc", "ap", "f1"}


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_killed_run_resumes_to_the_same_metrics(uninterrupted, tmp_path):
    expected, cache = uninterrupted
    out = tmp_path / "run"
    process = subprocess.Popen(train_command(out, cache), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = out / "checkpoints" / "csad.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (out / "metrics.json").exists(), "the kill came too late to test resuming"
    resumed = run_to_end(train_command(out, cache, "--resume"))
    for key in ("metrics", "bias_leakage"):
        assert resumed[key] == expected[key]
        assert resumed["baseline"][key] == expected["baseline"][key]


def test_bad_flags_fail_with_a_clear_message(tmp_path):
    done = subprocess.run([sys.executable, "-m", "python.train", "--quick", "--c", "2", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "c must lie in (0, 1)" in done.stderr


def test_run_training_on_a_config_object_gives_the_cli_result(uninterrupted, tmp_path):
    """The library entry, with a config and no argv, trains what the CLI trains on the same settings."""
    from python import train

    expected, cache = uninterrupted
    config = train.config_for({"dataset": "mpower", "quick": True, "out": str(tmp_path / "run"),
                               "cache_dir": str(cache)})
    metrics = train.run_training(config, train.RunOptions(progress=False))
    assert (tmp_path / "run" / "metrics.json").is_file()
    for key in ("metrics", "bias_leakage"):
        assert metrics[key] == expected[key]
        assert metrics["baseline"][key] == expected["baseline"][key]
