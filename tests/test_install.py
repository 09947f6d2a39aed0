"""The training package as users install it (README: ``pip install ... -e .`` or ``pip install .``): ``csad`` runs
from a folder outside the checkout, as ``python -m csad.train`` and as the ``csad-train`` command, while
``python -m python.train`` still runs from the repository root, and no module named ``python`` is installed.

These tests need the package installed into the interpreter that runs them, as CI (.ci/run) does: they fail, with
the install command in the message, where it is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = 'pip install --no-build-isolation -e ".[train,test,triton,bench]" (README, Install)'
# every phase of CSAD on Adult's shipped files, made cheap: one epoch per phase, K = 1, no baseline
CHEAP_QUICK_RUN = ("--dataset", "adult", "--quick", "--no-baseline", "--no-progress", "--pretrain-epochs", "1",
                   "--epochs", "1", "--k-inner", "1", "--batch-size", "512")


def clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH: the subprocess sees only what is installed (and its working folder)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=600)


def test_csad_imports_from_outside_the_checkout_and_python_is_not_installed(tmp_path):
    probe = ("import importlib.util, json, csad, csad.train, csad_kernels; "
             "print(json.dumps({'csad': csad.__file__, 'python': importlib.util.find_spec('python') is not None}))")
    done = run([sys.executable, "-c", probe], tmp_path)
    assert done.returncode == 0, f"csad is not installed in {sys.executable}: {INSTALL}\n{done.stderr[-2000:]}"
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert not found["python"], "a module named 'python' is importable outside the checkout: it must not be installed"
    assert Path(found["csad"]).name == "__init__.py"


def check_quick_run(command: list[str], cwd: Path, out: Path) -> None:
    done = run([*command, *CHEAP_QUICK_RUN, "--out", str(out)], cwd)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "adult" and metrics["method"] == "csad"
    assert 0.5 < metrics["metrics"]["test"]["auc"] <= 1.0, metrics["metrics"]["test"]


def test_installed_module_runs_a_quick_adult_run_outside_the_checkout(tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    check_quick_run([sys.executable, "-m", "csad.train"], work, tmp_path / "module_run")


def test_console_script_runs_a_quick_adult_run_outside_the_checkout(tmp_path):
    script = Path(sys.executable).parent / "csad-train"
    assert script.is_file(), f"no csad-train beside {sys.executable}: {INSTALL}"
    work = tmp_path / "elsewhere"
    work.mkdir()
    check_quick_run([str(script)], work, tmp_path / "script_run")


def test_python_train_still_runs_from_the_repository_root(tmp_path):
    check_quick_run([sys.executable, "-m", "python.train"], ROOT, tmp_path / "root_run")
