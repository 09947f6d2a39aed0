"""torch.distributed on this CPU machine: gloo, 2 processes.

The all-gathered estimator and the gradient sum over ranks give what one process computes on the concatenated
minibatch (values and gradients, in float64, for every method), parameters stay identical on both ranks, and
``torchrun --nproc-per-node=2 -m python.train`` finishes, writes one metrics.json and resumes after a kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from python import config as cfg
from python import distributed
from python.trainer import Trainer
from tests._train_helpers import tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
ROWS = 33  # one global minibatch: shards of 17 and 16 rows
METHODS = cfg.METHODS

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with gloo")


# ----- spawning gloo ranks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, out: str, local_estimator: bool) -> None:
    """One rank: joins the group through torchrun's variables (as ``python.train`` does) and runs the protocol."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    assert distributed.setup() and distributed.world_size() == WORLD and distributed.rank() == rank
    try:
        torch.save(protocol(local_estimator), Path(out) / f"rank{rank}.pt")
    finally:
        distributed.close()


def run_ranks(tmp_path: Path, local_estimator: bool = False) -> list[dict]:
    mp.spawn(_rank_main, args=(free_port(), str(tmp_path), local_estimator), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


# ----- what every rank (and one process) computes


def float64_trainer(method: str, **overrides) -> Trainer:
    """A Trainer of ``method`` on the tiny cohort, in float64 with the reference estimator (exact comparisons)."""
    config = cfg.TrainConfig(**{"method": method, "k_inner": 2, "backend": "reference", "lambda_": 0.7, **overrides})
    trainer = Trainer(config, tiny_bundle(), method, None, torch.device("cpu"), show_progress=False)
    trainer.net.double()
    trainer.method.extra.double()
    split = trainer.splits["train"]
    split.inputs = tuple(x.double() if x.is_floating_point() else x for x in split.inputs)
    return trainer


def parameters(trainer: Trainer) -> list[torch.Tensor]:
    return [*trainer.net.parameters(), *trainer.method.extra.parameters()]


def estimator_gradients(trainer: Trainer, batches: list) -> tuple[float, list[torch.Tensor]]:
    """I (summed over ``batches`` and ranks) and the gradients of M's parameters, on detached h^y, h^b."""
    m = trainer.method.extra["m"]
    m.zero_grad(set_to_none=True)
    value = 0.0
    for batch in batches:
        _, hy, hb = trainer.method.detached(batch)
        mi = trainer.method.mutual_information(hy, hb, batch)
        mi.backward()
        value += float(mi.detach())
    distributed.sync_gradients(list(m.parameters()))
    return distributed.sum_over_ranks({"mi": value})["mi"], [p.grad.clone() for p in m.parameters()]


def batchnorm_stats() -> torch.Tensor:
    """Running mean of a BatchNorm that saw rank-dependent data, after ``average_batchnorm_stats``."""
    bn = torch.nn.BatchNorm1d(3)
    bn(torch.randn(8, 3, generator=torch.Generator().manual_seed(distributed.rank())) + distributed.rank())
    distributed.average_batchnorm_stats(bn)
    return bn.running_mean.clone()


def protocol(local_estimator: bool = False) -> dict:
    """Per method: the losses and every parameter's gradient of one step of its last phase (optimizers frozen), then the
    parameters after two real steps; all on the global minibatch ``arange(ROWS)``. Also CSAD's estimate and M's
    gradients on that minibatch."""
    trainer = float64_trainer("csad", local_estimator=local_estimator)
    record: dict = {"estimator": estimator_gradients(trainer, [trainer.batch(torch.arange(ROWS))]),
                    "batchnorm": batchnorm_stats()}
    for method in METHODS:
        trainer = float64_trainer(method, local_estimator=local_estimator)
        batch = trainer.batch(torch.arange(ROWS))
        params = parameters(trainer)
        opts = trainer.method.optimizers.values()
        last_phase = trainer.method.phases()[-1].name
        for opt in opts:
            opt.step = lambda: None  # gradients only
        torch.manual_seed(0)
        losses = distributed.sum_over_ranks(trainer.method.step(last_phase, batch))
        grads = [p.grad.clone() if p.grad is not None else torch.full_like(p, float("nan")) for p in params]
        for opt in opts:
            del opt.step
        for _ in range(2):
            trainer.method.step(last_phase, batch)
        record[method] = {"losses": losses, "grads": grads, "params": [p.detach().clone() for p in params]}
    return record


# ----- (a) the gathered estimator and the gradient sum


@pytest.fixture(scope="module")
def single_process() -> dict:
    assert not distributed.is_distributed()
    return protocol()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    return run_ranks(tmp_path_factory.mktemp("ranks"))


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_compute_the_losses_and_gradients_of_one_process_on_the_concatenated_batch(
        single_process, two_ranks, method):
    """csad & co. all-gather u, v and the bias labels, mi_label the features; every loss is each rank's
    contribution, gradients are summed over ranks: the result is the single-process step, to float64 round-off."""
    expected = single_process[method]
    for got in two_ranks:
        assert got[method]["losses"].keys() == expected["losses"].keys()
        for key, value in expected["losses"].items():
            assert got[method]["losses"][key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
        for g, e in zip(got[method]["grads"], expected["grads"], strict=True):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("method", METHODS)
def test_parameters_stay_identical_on_both_ranks_and_follow_the_single_process_run(
        single_process, two_ranks, method):
    first, second = (r[method]["params"] for r in two_ranks)
    for a, b, e in zip(first, second, single_process[method]["params"], strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10)


def test_the_gathered_estimator_is_the_estimator_of_the_concatenated_batch(single_process, two_ranks):
    value, grads = single_process["estimator"]
    for got_value, got_grads in (r["estimator"] for r in two_ranks):
        assert got_value == pytest.approx(value, rel=1e-12)
        for g, e in zip(got_grads, grads, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-13)


def test_cpu_batchnorm_running_statistics_are_averaged_over_ranks(two_ranks):
    first, second = (r["batchnorm"] for r in two_ranks)
    assert torch.equal(first, second)
    expected = torch.zeros(3)
    for rank in range(WORLD):
        bn = torch.nn.BatchNorm1d(3)
        bn(torch.randn(8, 3, generator=torch.Generator().manual_seed(rank)) + rank)
        expected += bn.running_mean / WORLD
    torch.testing.assert_close(first, expected)


def test_the_local_estimator_weighs_each_shards_own_estimate_by_its_size(tmp_path):
    """With local_estimator each rank estimates I on its own shard: value and M's gradients are those of the
    shards' estimates weighted by shard size (one process, each shard as a minibatch of its own). Parameters
    still stay identical on both ranks."""
    ranks = run_ranks(tmp_path, local_estimator=True)
    trainer = float64_trainer("csad", local_estimator=True)
    weighted = [trainer.batch(index) for index in torch.arange(ROWS).tensor_split(WORLD)]
    for batch in weighted:
        batch.total = ROWS  # each shard's share of the minibatch (Batch.share), as a rank weighs it
    value, grads = estimator_gradients(trainer, weighted)
    whole, _ = estimator_gradients(trainer, [trainer.batch(torch.arange(ROWS))])
    assert value != pytest.approx(whole, rel=1e-3)  # a different estimate from the gathered one
    for got_value, got_grads in (r["estimator"] for r in ranks):
        assert got_value == pytest.approx(value, rel=1e-12)
        for g, e in zip(got_grads, grads, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-13)
    for method in METHODS:
        for a, b in zip(ranks[0][method]["params"], ranks[1][method]["params"], strict=True):
            assert torch.equal(a, b), method


# ----- (b), (c) torchrun end to end


def torchrun_command(out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
            "-m", "python.train", "--dataset", "adult", "--method", "csad", "--quick", "--no-baseline",
            "--no-progress", "--out", str(out), *flags]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("torchrun") / "run"
    done = subprocess.run(torchrun_command(out), cwd=ROOT, env=environment(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_a_quick_torchrun_run_finishes_and_rank_0_alone_writes_and_prints(torchrun_run):
    out, stdout = torchrun_run
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "checkpoints/csad.pt", "config.yaml", "curves.png", "history.csv", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == WORLD and metrics["method"] == "csad" and metrics["baseline"] is None
    assert 0.5 < metrics["metrics"]["test"]["auc"] <= 1
    assert stdout.count("wrote ") == 1 and stdout.count("run folder:") == 1


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc), children before their own children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant, whatever process group or session they are in."""
    for target in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def wait_until_unlocked(lock: Path, timeout_s: float = 60.0) -> None:
    """Returns once nobody holds the flock on ``lock`` (the killed processes have exited)."""
    import fcntl

    deadline = time.monotonic() + timeout_s
    with open(lock, "a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{lock} still held {timeout_s:.0f} s after the kill"
                time.sleep(0.05)
                continue
            fcntl.flock(f, fcntl.LOCK_UN)
            return


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_killed_torchrun_run_resumes_to_the_same_metrics(torchrun_run, tmp_path):
    expected = json.loads((torchrun_run[0] / "metrics.json").read_text())
    out = tmp_path / "run"
    process = subprocess.Popen(torchrun_command(out), cwd=ROOT, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = out / "checkpoints" / "csad.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_tree(process.pid)  # torchrun starts each rank in a session of its own: killing its group spares them
    process.wait()  # torchrun only: the killed ranks may still hold the run folder's lock for a moment
    wait_until_unlocked(out.parent / f".{out.name}.lock")
    assert checkpoint.exists() and not (out / "metrics.json").exists(), "the kill came too late to test resuming"
    done = subprocess.run(torchrun_command(out, "--resume"), cwd=ROOT, env=environment(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((out / "metrics.json").read_text())
    for key in ("metrics", "bias_leakage"):
        assert resumed[key] == expected[key]
