"""python.debiaser.Debiaser: CSAD's schedule on your own modules (one minibatch, every phase over a DataLoader,
resume from a checkpoint, torchrun), and the example examples/own_model.py (the bias leakage falls)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from python import Debiaser, distributed
from tests.test_distributed import free_port

ROOT = Path(__file__).resolve().parents[1]


def data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x (n, 6)``, binary ``y (n,)`` and ``bias (n,)``, y equal to the bias in 90% of the rows."""
    gen = torch.Generator().manual_seed(seed)
    bias = torch.randint(0, 2, (n,), generator=gen)
    y = torch.where(torch.rand(n, generator=gen) < 0.9, bias, 1 - bias)
    x = torch.randn(n, 6, generator=gen) + torch.stack([y, bias], 1).repeat(1, 3).float()
    return x, y, bias


def debiaser(seed: int = 0, **settings) -> Debiaser:
    torch.manual_seed(seed)
    features = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
    return Debiaser(features, feature_dim=16, n_classes=2, bias_classes=[2], branch_dim=8, **settings)


def optimizer_steps(d: Debiaser) -> dict[str, list[int]]:
    """Adam's step count of each parameter, per optimizer of the method."""
    return {name: [int(opt.state[p]["step"]) if p in opt.state else 0 for g in opt.param_groups for p in g["params"]]
            for name, opt in d.method.optimizers.items()}


def test_an_adversarial_step_is_one_target_step_k_bias_and_estimator_steps_and_one_step_of_f():
    d = debiaser(k_inner=3)
    x, y, bias = data()
    losses = d.step(x, y, bias)
    assert set(losses) == {"target", "bias", "mi", "mi_adversarial"}
    steps = optimizer_steps(d)
    n_f = len(list(d.net.f.parameters()))
    # the target optimizer holds F, D_y, P_y: F moved twice (target step, then λ·I), D_y and P_y once
    assert steps["target"] == [2] * n_f + [1] * (len(steps["target"]) - n_f)
    assert set(steps["bias"]) == {3} and set(steps["estimator"]) == {3}


def test_pretraining_phases_update_only_their_own_modules():
    d = debiaser(k_inner=2)
    x, y, bias = data()
    f_before = [p.detach().clone() for p in d.net.f.parameters()]
    d.step(x, y, bias, phase="pretrain_bias")
    d.step(x, y, bias, phase="pretrain_estimator")
    assert all(torch.equal(a, b) for a, b in zip(f_before, d.net.f.parameters(), strict=True))
    assert set(optimizer_steps(d)["bias"]) == {1} and set(optimizer_steps(d)["estimator"]) == {1}
    with pytest.raises(ValueError, match="phase must be one of"):
        d.step(x, y, bias, phase="train")


def test_your_own_heads_are_used_and_size_the_estimator():
    torch.manual_seed(0)
    target_branch, bias_branch = nn.Sequential(nn.Linear(16, 12), nn.ReLU()), nn.Sequential(nn.Linear(16, 10))
    target_head, bias_head = nn.Linear(12, 3), nn.Linear(10, 4)  # 3 target classes; one bias head, a plain tensor
    d = Debiaser(nn.Sequential(nn.Linear(6, 16), nn.ReLU()), feature_dim=16, n_classes=3, bias_classes=[4],
                 target_branch=target_branch, target_head=target_head, bias_branch=bias_branch, bias_heads=bias_head,
                 method="csad_ms", conditional=True, k_inner=2)
    assert d.net.d_y is target_branch and d.net.p_b is bias_head
    m = d.method.extra["m"]
    assert m.head_y[0].in_features == 12 and m.head_b[0].in_features == 10 and m.estimator == "ms"
    x, _, _ = data()
    gen = torch.Generator().manual_seed(1)
    losses = d.step(x, torch.randint(0, 3, (64,), generator=gen), torch.randint(0, 4, (64,), generator=gen))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert d.outputs(x)["logits"].shape == (64, 3)


def test_settings_are_checked_as_the_cli_checks_its_flags():
    with pytest.raises(TypeError, match="unknown setting"):
        debiaser(lamda=1.0)
    with pytest.raises(ValueError, match="c must lie in"):
        debiaser(c=1.5)
    with pytest.raises(ValueError, match="method must be one of"):
        debiaser(method="grad_reverse")
    with pytest.raises(ValueError, match="feature_dim"):
        Debiaser(nn.Linear(6, 16), n_classes=2, bias_classes=[2])


def loader(n_batches: int = 4) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    x, y, bias = data(32 * n_batches)
    return list(zip(x.split(32), y.split(32), bias.split(32), strict=True))


class Killed(Exception):
    pass


def killed_after(batches: list, n: int):
    """An iterable over ``batches`` that raises :class:`Killed` once it has yielded ``n`` batches in all."""
    state = {"left": n}

    class Loader:
        def __iter__(self):
            for batch in batches:
                if state["left"] == 0:
                    raise Killed
                state["left"] -= 1
                yield batch

    return Loader()


SCHEDULE = {"pretrain_epochs": 2, "bias_epochs": 2, "estimator_epochs": 1, "epochs": 2, "k_inner": 2}


def test_fit_runs_every_phase_and_resumes_from_its_checkpoint_to_the_same_model(tmp_path):
    batches = loader()
    whole = debiaser(**SCHEDULE)
    history = whole.fit(batches)
    assert [h["phase"] for h in history] == ["pretrain_target"] * 2 + ["pretrain_bias"] * 2 + \
        ["pretrain_estimator"] + ["adversarial"] * 2
    path = tmp_path / "debiaser.pt"
    with pytest.raises(Killed):  # killed in the middle of the first adversarial epoch
        debiaser(**SCHEDULE).fit(killed_after(batches, 5 * len(batches) + 2), checkpoint_path=path)
    resumed = debiaser(seed=1, **SCHEDULE)  # other initial weights: the checkpoint must replace them
    assert resumed.fit(batches, checkpoint_path=path) == history
    for a, b in zip(whole.net.state_dict().values(), resumed.net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_example_shows_the_bias_leakage_falling():
    spec = importlib.util.spec_from_file_location("own_model", ROOT / "examples" / "own_model.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--n-train", "2000", "--epochs", "3"])
    vanilla, csad = result["vanilla"], result["csad"]
    assert csad["leakage_hy"] < vanilla["leakage_hy"] - 0.03, result
    assert csad["leakage_z"] < vanilla["leakage_z"], result
    assert csad["accuracy"] > vanilla["accuracy"], result  # the test split decorrelates target and bias


# ----- torchrun: two gloo processes, each with its shard of the global minibatch

WORLD = 2


def _rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    assert distributed.setup()
    try:
        d, x, y, bias = float64_debiaser(seed=rank)  # different seeds: the Debiaser broadcasts rank 0's weights
        rows = distributed.shard(torch.arange(len(y)))
        losses = d.step(x[rows], y[rows], bias[rows])
        torch.save({"losses": losses, "params": [p.detach() for p in d.net.parameters()]}, Path(out) / f"{rank}.pt")
    finally:
        distributed.close()


def float64_debiaser(seed: int = 0) -> tuple[Debiaser, torch.Tensor, torch.Tensor, torch.Tensor]:
    d = debiaser(seed, k_inner=2, backend="reference")
    d.net.double()
    d.method.extra.double()
    x, y, bias = data(32)
    return d, x.double(), y, bias


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed (gloo)")
def test_two_processes_on_shards_take_the_step_of_one_process_on_the_whole_minibatch(tmp_path):
    mp.spawn(_rank_main, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(WORLD)]
    d, x, y, bias = float64_debiaser(seed=0)
    losses = d.step(x, y, bias)
    for rank in ranks:
        assert rank["losses"].keys() == losses.keys()
        for key, value in losses.items():
            assert rank["losses"][key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
        for a, b in zip(rank["params"], d.net.parameters(), strict=True):
            torch.testing.assert_close(a, b.detach(), rtol=1e-9, atol=1e-9)
