"""scripts/gpu_check.sh without a GPU: its syntax, and its stage logic in the dry-run mode (stub commands)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
STAGES = ["env", "warm", "build", "tests", "parity", "bench"]
# Each side waits for the other's marker: passes only if warm and build run at the same time.
MEET = "touch {mine}; for i in $(seq 100); do [ -e {other} ] && exit 0; sleep 0.1; done; exit 1"


def _dry_run(tmp_path: Path, **stubs: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    env |= {"GPU_CHECK_DRY_RUN": "1", **stubs}
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    rows = [line.split("\t") for line in (tmp_path / "stages.tsv").read_text().splitlines()]
    assert rows[0] == ["stage", "status", "exit", "seconds"]
    return done, rows[1:]


def test_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(SCRIPT)], check=True)


def test_every_stage_runs_warm_beside_build_and_the_real_commands_are_the_documented_ones(tmp_path):
    done, rows = _dry_run(
        tmp_path,
        GPU_CHECK_STUB_WARM=MEET.format(mine=tmp_path / "w", other=tmp_path / "b"),
        GPU_CHECK_STUB_BUILD=MEET.format(mine=tmp_path / "b", other=tmp_path / "w"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(r[0] for r in rows) == sorted(STAGES)
    assert [r[0] for r in rows if r[0] not in ("warm", "build")] == ["env", "tests", "parity", "bench"]
    assert all(r[1:3] == ["ok", "0"] for r in rows)
    tests = (tmp_path / "tests.log").read_text()
    assert "pytest" in tests and "tests/test_cuda_backend.py" in tests
    assert (
        "benchmarks.report --ops cs_mutual_information --modes fwdbwd --dims 32" in (tmp_path / "bench.log").read_text()
    )
    assert "| parity | ok | 0 |" in (tmp_path / "summary.md").read_text()


def test_build_command_and_default_stub(tmp_path):
    done, _ = _dry_run(tmp_path)
    assert done.returncode == 0
    assert "pip install --no-build-isolation --no-deps -e ." in (tmp_path / "build.log").read_text()
    assert "benchmarks.resources --jobs 8" in (tmp_path / "warm.log").read_text()


@pytest.mark.parametrize("stage", ["build", "tests"])
def test_a_failed_or_timed_out_stage_is_recorded_and_later_stages_still_run(tmp_path, stage):
    done, rows = _dry_run(
        tmp_path,
        **{
            f"GPU_CHECK_STUB_{stage.upper()}": "exit 3",
            "GPU_CHECK_STUB_BENCH": "sleep 30",
            "GPU_CHECK_LIMIT_BENCH": "1",
        },
    )
    assert done.returncode != 0
    status = {r[0]: r[1:3] for r in rows}
    assert status[stage] == ["failed", "3"]
    assert status["bench"] == ["timeout", "124"]
    assert status["parity"] == ["ok", "0"] and len(rows) == len(STAGES)
