"""The run folder: failed starts, quick runs' own folder, resume checks, the lock, file modes, one-line errors."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import python.train as train_cli
from python import checkpoint
from python import config as cfg
from python.report import write_json_atomic
from tests._train_helpers import tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
FEW_EPOCHS = ["--pretrain-epochs", "1", "--bias-epochs", "1", "--estimator-epochs", "1", "--epochs", "1",
              "--k-inner", "2", "--batch-size", "32", "--no-progress", "--method", "baseline"]


@pytest.fixture
def tiny_data(monkeypatch):
    monkeypatch.setattr(train_cli, "load_dataset", lambda config: tiny_bundle())


def run(out: Path, *flags: str) -> dict:
    return train_cli.main(["--out", str(out), *FEW_EPOCHS, *flags])


def test_a_start_that_fails_while_loading_data_does_not_block_the_retry(tmp_path, monkeypatch):
    def broken(config):
        raise ValueError("data file broken")

    monkeypatch.setattr(train_cli, "load_dataset", broken)
    with pytest.raises(ValueError, match="data file broken"):
        run(tmp_path / "run")
    monkeypatch.setattr(train_cli, "load_dataset", lambda config: tiny_bundle())
    assert run(tmp_path / "run")["metrics"]["test"]["auc"] >= 0  # not "already holds a run"


def test_a_folder_with_other_files_is_still_protected(tmp_path, tiny_data):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already holds a run"):
        run(tmp_path / "run")


def test_quick_runs_get_their_own_default_folder():
    full = cfg.resolve({"dataset": "mpower", "method": "csad"})
    quick = cfg.resolve({"dataset": "mpower", "method": "csad", "quick": True})
    assert full.run_dir == Path("runs/mpower_csad_seed0") and quick.run_dir == Path("runs/mpower_csad_seed0_quick")


def test_resume_must_keep_the_quick_setting(tmp_path, tiny_data):
    run(tmp_path / "run", "--quick", "--pretrain-epochs", "1", "--epochs", "1")
    with pytest.raises(SystemExit, match=r"--resume without --quick: .* holds a --quick run"):
        run(tmp_path / "run", "--resume")


def test_resume_without_a_checkpoint_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(train_cli, "load_dataset", lambda config: (_ for _ in ()).throw(ValueError("stop")))
    with pytest.raises(ValueError, match="stop"):
        run(tmp_path / "run")
    with pytest.raises(SystemExit, match="holds no checkpoint .* start it again without --resume"):
        run(tmp_path / "run", "--resume")


def test_a_locked_run_folder_is_refused_even_with_overwrite(tmp_path, tiny_data):
    run(tmp_path / "run")
    holder = subprocess.Popen(  # another process holding the lock, as a run that is writing the folder does
        [sys.executable, "-c", "import sys, time; from pathlib import Path; import python.train as t; "
         "t.lock_run_dir(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)", str(tmp_path / "run")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=r"is in use: another run is writing it"):
            run(tmp_path / "run", "--overwrite")
        assert (tmp_path / "run" / "metrics.json").is_file()  # untouched
    finally:
        holder.kill()
        holder.wait()
    run(tmp_path / "run", "--overwrite")  # the kill released the lock


def test_outputs_honour_the_umask(tmp_path, tiny_data):
    old = os.umask(0o022)
    try:
        run(tmp_path / "run")
    finally:
        os.umask(old)
    folder = tmp_path / "run"
    for path in (folder / "metrics.json", folder / "checkpoints" / "baseline.pt", folder / "config.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_an_unwritable_out_is_a_one_line_error(tmp_path, tiny_data):
    (tmp_path / "file").write_text("")  # --out below a file: unwritable for root too (a read-only mount is alike)
    with pytest.raises(SystemExit, match=r"cannot write the run folder .*file/run: "):
        run(tmp_path / "file" / "run")


def test_a_full_disk_is_an_oserror_naming_the_file(tmp_path, monkeypatch):
    def full(state, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"cannot write .*x\.pt: No space left on device"):
        checkpoint.save_atomic({"a": torch.zeros(1)}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())  # no temp file left
    (tmp_path / "blocker").write_text("")  # a file where the folder should be
    with pytest.raises(OSError, match=r"cannot write .*blocker/m\.json"):
        write_json_atomic({"a": 1}, tmp_path / "blocker" / "m.json")


def test_a_wrong_shaped_checkpoint_is_a_one_line_error(tmp_path, tiny_data, monkeypatch):
    from functools import partialmethod

    from python.trainer import Interrupted, Trainer

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", partialmethod(Trainer.fit, stop_after_epochs=1))
        with pytest.raises(Interrupted):
            run(tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "baseline.pt"
    state = torch.load(path, weights_only=True)
    name = next(iter(state["net"]))
    state["net"][name] = torch.zeros(3, 1, 2)
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"checkpoint .*baseline\.pt does not fit this run's model: .*{name}") as info:
        run(tmp_path / "run", "--resume")
    assert "\n" not in str(info.value)


def test_a_bad_device_string_is_a_one_line_error(tmp_path, tiny_data):
    with pytest.raises(ValueError, match=r"--device cuda:abc: not a device"):
        run(tmp_path / "run", "--device", "cuda:abc")


def test_a_batch_size_above_the_train_split_is_reported(tmp_path, tiny_data, capsys):
    run(tmp_path / "run", "--batch-size", "1000000000000")
    assert "--batch-size 1000000000000 exceeds the 96 training samples" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "python.train", "--device", "cuda:abc", "--quick", "--out",
                           str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "cuda:abc" in done.stderr
