"""The training package: every method end to end, Algorithm 2's update discipline, checkpoints and resume."""

from __future__ import annotations

import csv
import json
from functools import partialmethod
from pathlib import Path

import pytest
import torch

import python.train as train_cli
from python import checkpoint
from python import config as cfg
from python.methods import Batch, Phase
from python.methods.blind_eye import confusion_loss
from python.methods.csad import CSAD
from python.methods.grad_reverse import reverse_gradient
from python.trainer import Interrupted, Trainer, plateaued
from tests._train_helpers import tiny_bundle

FEW_EPOCHS = ["--pretrain-epochs", "1", "--bias-epochs", "1", "--estimator-epochs", "1", "--epochs", "1",
              "--k-inner", "2", "--batch-size", "32", "--no-progress"]


@pytest.fixture
def tiny_data(monkeypatch):
    monkeypatch.setattr(train_cli, "load_dataset", lambda config: tiny_bundle())


def run(tmp_path, *flags: str) -> dict:
    return train_cli.main(["--out", str(tmp_path / "run"), *FEW_EPOCHS, *flags])


@pytest.mark.parametrize("method", cfg.METHODS)
def test_every_method_runs_end_to_end_and_writes_its_run_folder(tmp_path, tiny_data, method, capsys):
    metrics = run(tmp_path, "--method", method)
    folder = tmp_path / "run"
    assert {"config.yaml", "metrics.json", "history.csv", "curves.png", "checkpoints"} <= {
        p.name for p in folder.iterdir()}
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert set(saved) >= {"dataset", "method", "data_source", "seed", "backend", "device", "wall_time_s", "metrics",
                          "bias_leakage", "baseline"}
    assert saved["method"] == method and saved["data_source"] == "simulated" and saved["backend"] == "cpu"
    assert set(saved["metrics"]) == {"val", "test"}
    for split in ("val", "test"):
        assert {"auc", "ap", "f1", "accuracy"} <= set(saved["metrics"][split])
        assert 0 <= saved["metrics"][split]["auc"] <= 1
    probe = saved["bias_leakage"]["age"]["features"]
    assert 0 <= probe["balanced_accuracy"] <= 1 and probe["chance_balanced_accuracy"] == pytest.approx(1 / 8)
    if method == "baseline":
        assert saved["baseline"] is None
    else:
        assert set(saved["baseline"]["metrics"]) == {"val", "test"} and "bias_leakage" in saved["baseline"]
        assert (folder / "checkpoints" / "baseline.pt").is_file()
    table = capsys.readouterr().out
    assert "test auc (bias-free)" in table and "baseline" in table and method in table


def test_backend_is_passed_through_to_the_estimator(tmp_path, tiny_data):
    metrics = run(tmp_path, "--method", "csad", "--backend", "reference", "--no-baseline")
    assert metrics["backend"] == "reference"


def test_an_unavailable_backend_stops_before_training_and_says_why(tmp_path, tiny_data):
    with pytest.raises(SystemExit, match="--backend cuda: .*not available"):
        run(tmp_path, "--backend", "cuda")


def test_history_csv_has_a_row_per_method_and_epoch_with_every_loss_and_the_validation_metric(tmp_path, tiny_data):
    run(tmp_path, "--method", "csad", "--pretrain-epochs", "2", "--epochs", "2")
    folder = tmp_path / "run"
    with open(folder / "history.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    assert header == ["method", "phase", "epoch", "target", "bias", "mi", "mi_adversarial", "val_auc"]
    expected = [("baseline", "train", e) for e in (1, 2, 3, 4)] + [
        ("csad", "pretrain_target", 1), ("csad", "pretrain_target", 2), ("csad", "pretrain_bias", 1),
        ("csad", "pretrain_estimator", 1), ("csad", "adversarial", 1), ("csad", "adversarial", 2)]
    assert [(r["method"], r["phase"], int(r["epoch"])) for r in rows] == expected
    logged = {"train": {"target"}, "pretrain_target": {"target"}, "pretrain_bias": {"bias"},
              "pretrain_estimator": {"mi"}, "adversarial": {"target", "bias", "mi", "mi_adversarial"}}
    for r in rows:
        assert {k for k in header[3:-1] if r[k] != ""} == logged[r["phase"]]
        assert 0 <= float(r["val_auc"]) <= 1
    for method in ("baseline", "csad"):  # the numbers are the run's own history, at full precision
        history = checkpoint.load(folder / "checkpoints" / f"{method}.pt")["history"]
        mine = [r for r in rows if r["method"] == method]
        assert [{k: float(v) for k, v in r.items() if k not in ("method", "phase", "epoch") and v != ""}
                for r in mine] == [{k: v for k, v in h.items() if k not in ("phase", "epoch")} for h in history]


def test_curves_png_gives_each_loss_its_own_panel(tmp_path):
    from python.report import plot_curves
    from python.trainer import RunResult

    history = [{"phase": "pretrain_target", "epoch": 1, "target": 0.6, "val_auc": 0.7},
               {"phase": "pretrain_estimator", "epoch": 1, "mi": -4.0, "val_auc": 0.7},
               {"phase": "adversarial", "epoch": 1, "target": 0.5, "mi": -1.0, "val_auc": 0.8}]
    seen = []
    import matplotlib.figure

    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(fig, *args, **kwargs):
        seen.append([ax.get_title() for ax in fig.axes if ax.axison])
        return real_savefig(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(matplotlib.figure.Figure, "savefig", savefig)
        plot_curves([RunResult("baseline", {}, {}, history[:1], 0.0), RunResult("csad", {}, {}, history, 0.0)],
                    "auc", tmp_path / "curves.png")
    assert seen == [["baseline: validation auc", "baseline: target", "csad: validation auc", "csad: target",
                     "csad: mi"]]
    assert (tmp_path / "curves.png").stat().st_size > 0


# ----- Algorithm 2's update discipline


def make_csad(**overrides) -> tuple[CSAD, Batch]:
    bundle = tiny_bundle()
    config = cfg.TrainConfig(**{"batch_size": 32, "k_inner": 3, **overrides})
    trainer = Trainer(config, bundle, "csad", checkpoint_path=None, device=torch.device("cpu"), show_progress=False)
    split = bundle.splits["train"]
    index = torch.arange(32)
    return trainer.method, Batch(tuple(x[index] for x in split.inputs), split.y[index], split.bias[index])


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def parts(method: CSAD) -> dict[str, torch.nn.Module]:
    net = method.net
    return {"f": net.f, "d_y": net.d_y, "p_y": net.p_y, "d_b": net.d_b, "p_b": net.p_b, "m": method.extra["m"]}


def moved_by(method: CSAD, action) -> set[str]:
    before = {name: snapshot(module) for name, module in parts(method).items()}
    action()
    return {name for name, module in parts(method).items() if changed(before[name], module)}


def test_each_csad_step_moves_only_its_own_networks():
    method, batch = make_csad()
    z, hy, hb = method.detached(batch)
    assert moved_by(method, lambda: method.target_step(batch)) == {"f", "d_y", "p_y"}
    assert moved_by(method, lambda: method.bias_step(z, batch)) == {"d_b", "p_b"}
    assert moved_by(method, lambda: method.estimator_step(hy, hb, batch)) == {"m"}
    assert moved_by(method, lambda: method.adversarial_step(batch)) == {"f"}


def test_the_adversarial_step_leaves_no_gradient_outside_f():
    method, batch = make_csad()
    for p in [p for m in parts(method).values() for p in m.parameters()]:
        p.grad = None
    method.adversarial_step(batch)
    for name, module in parts(method).items():
        has_grad = [p.grad is not None for p in module.parameters()]
        assert all(has_grad) if name == "f" else not any(has_grad), name


def test_a_csad_minibatch_is_one_target_step_k_bias_k_estimator_then_one_adversarial_step(monkeypatch):
    method, batch = make_csad(k_inner=4)
    calls = []
    original = type(method).update
    monkeypatch.setattr(type(method), "update",
                        lambda self, opt, loss, **kw: calls.append(opt) or original(self, opt, loss, **kw))
    method.step("adversarial", batch)
    assert calls == ["target"] + ["bias"] * 4 + ["estimator"] * 4 + ["target"]


def test_lambda_weighs_the_adversarial_step_against_the_target_loss():
    """F's adversarial step shares Adam's moments with the target step, so a large λ turns F's step towards
    −∇I while a small one leaves it on the target loss's course (a separate Adam for λ·I would normalise λ away)."""
    alignment = []
    for lam in (0.01, 100.0):
        method, batch = make_csad(lambda_=lam)
        method.target_step(batch)
        net, m = method.net, method.extra["m"]
        z = net.features(*batch.inputs)
        grad_mi = torch.autograd.grad(m(net.target_branch(z), net.bias_branch(z), batch.bias), list(net.f.parameters()))
        before = [p.detach().clone() for p in net.f.parameters()]
        method.adversarial_step(batch)
        step = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.f.parameters(), before, strict=True)])
        descent = -torch.cat([g.flatten() for g in grad_mi])
        alignment.append(float(torch.nn.functional.cosine_similarity(step, descent, dim=0)))
    assert alignment[1] > 0.3 and alignment[1] > alignment[0] + 0.2, alignment


def test_optimizers_own_the_parameters_algorithm_2_gives_them():
    method, _ = make_csad()
    owned = {name: {id(p) for g in opt.param_groups for p in g["params"]} for name, opt in method.optimizers.items()}
    ids = {name: {id(p) for p in module.parameters()} for name, module in parts(method).items()}
    assert set(owned) == {"target", "bias", "estimator"}
    assert owned["target"] == ids["f"] | ids["d_y"] | ids["p_y"]
    assert owned["bias"] == ids["d_b"] | ids["p_b"]
    assert owned["estimator"] == ids["m"]


def test_f_descends_on_mutual_information_and_m_ascends():
    method, batch = make_csad(lr=1e-4)
    m = method.extra["m"]

    def mi() -> float:
        with torch.no_grad():
            z = method.net.features(*batch.inputs)
            return float(m(method.net.target_branch(z), method.net.bias_branch(z), batch.bias))

    before = mi()
    method.adversarial_step(batch)
    after_f = mi()
    _, hy, hb = method.detached(batch)
    method.estimator_step(hy, hb, batch)
    after_m = mi()
    assert after_f < before and after_m > after_f


def test_the_pretraining_phases_keep_f_frozen():
    method, batch = make_csad()
    assert moved_by(method, lambda: method.step("pretrain_bias", batch)) == {"d_b", "p_b"}
    assert moved_by(method, lambda: method.step("pretrain_estimator", batch)) == {"m"}
    assert [p.name for p in method.phases()] == ["pretrain_target", "pretrain_bias", "pretrain_estimator",
                                                 "adversarial"]


@pytest.mark.parametrize("name", ["csad_ms", "csad_content", "csad_struc", "ad_jsd"])
def test_csad_variants_configure_the_estimator(name):
    trainer = Trainer(cfg.TrainConfig(method=name), tiny_bundle(), name, None, torch.device("cpu"),
                      show_progress=False)
    m = trainer.method.extra["m"]
    expected = {"csad_ms": ("joint", "ms"), "csad_content": ("content", "cs"), "csad_struc": ("structural", "cs"),
                "ad_jsd": ("content", "jsd")}
    assert (m.similarity, m.estimator) == expected[name]


@pytest.mark.parametrize("conditional", [False, True])
def test_conditional_passes_the_target_labels_as_groups_to_every_estimate(conditional, monkeypatch):
    method, batch = make_csad(conditional=conditional)
    m = method.extra["m"]
    seen = []
    estimate = m.estimate

    def spy(u, v, bias=None, mask=None, groups=None):
        seen.append(groups)
        return estimate(u, v, bias, mask, groups)

    monkeypatch.setattr(m, "estimate", spy)
    method.step("adversarial", batch)
    assert len(seen) == method.config.k_inner + 1  # K estimator steps and F's adversarial step
    for groups in seen:
        assert torch.equal(groups, batch.y) if conditional else groups is None


def test_the_conditional_estimate_differs_from_the_unconditional_one():
    method, batch = make_csad()
    _, hy, hb = method.detached(batch)
    m = method.extra["m"]
    with torch.no_grad():
        assert not torch.allclose(m(hy, hb, batch.bias), m(hy, hb, batch.bias, groups=batch.y))


def test_conditional_is_only_for_estimator_methods_and_gets_its_own_run_folder():
    with pytest.raises(ValueError, match="conditional applies to the cross-sample estimator methods"):
        cfg.resolve({"method": "grad_reverse", "conditional": True})
    config = cfg.resolve({"method": "csad_ms", "conditional": True})
    assert config.run_dir.name == "mpower_csad_ms_conditional_seed0"


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    (reverse_gradient(x, 2.5) * w).sum().backward()
    torch.testing.assert_close(x.grad, -2.5 * w)


@pytest.mark.parametrize("name", ["grad_reverse", "blind_eye", "mi_label"])
def test_adversarial_baselines_give_f_the_target_gradient_plus_the_reversed_bias_gradient(name):
    """F's gradient in the adversarial step is grad(target) + λ·grad(debias term) where the debias term is the
    reversed bias loss (grad_reverse), the confusion loss (blind_eye) or the MINE bound (mi_label)."""
    bundle, lam = tiny_bundle(), 0.7
    config = cfg.TrainConfig(method=name, lambda_=lam, k_inner=1)
    trainer = Trainer(config, bundle, name, None, torch.device("cpu"), show_progress=False)
    method, net = trainer.method, trainer.net
    split = bundle.splits["train"]
    batch = Batch(split.inputs, split.y, split.bias)
    for opt in method.optimizers.values():
        opt.step = lambda: None  # keep the weights: only the gradients are compared
    torch.manual_seed(0)
    method.step("adversarial", batch)
    got = [p.grad.clone() for p in net.f.parameters()]
    z = net.features(*batch.inputs)
    target = method.target_loss(net.target_logits(net.target_branch(z)), batch.y)
    if name == "grad_reverse":
        debias = -method.bias_loss(net.bias_logits(net.bias_branch(z)), batch.bias)
    elif name == "blind_eye":
        debias = confusion_loss(net.bias_logits(net.bias_branch(z)))
    else:
        torch.manual_seed(0)
        permutation = torch.randperm(len(batch.y))
        debias = method.extra["mine"](z, batch.bias, permutation)
    expected = torch.autograd.grad(target + lam * debias, list(net.f.parameters()))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


# ----- checkpoints and resume


def test_resume_after_an_interruption_reaches_the_same_metrics(tmp_path, tiny_data, monkeypatch):
    uninterrupted = run(tmp_path / "a", "--method", "csad")
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", partialmethod(Trainer.fit, stop_after_epochs=2))
        with pytest.raises(Interrupted):
            run(tmp_path / "b", "--method", "csad")
    (tmp_path / "b").rename(tmp_path / "moved")  # a run folder resumes where it is now, not where it was made
    resumed = run(tmp_path / "moved", "--method", "csad", "--resume")
    assert (tmp_path / "moved" / "run" / "metrics.json").is_file() and not (tmp_path / "b").exists()
    for key in ("metrics", "bias_leakage"):
        assert resumed[key] == uninterrupted[key]
        assert resumed["baseline"][key] == uninterrupted["baseline"][key]


def test_resume_cannot_change_the_saved_settings(tmp_path, tiny_data):
    run(tmp_path, "--method", "baseline")
    with pytest.raises(ValueError, match="cannot change its settings.*lambda"):
        run(tmp_path, "--method", "baseline", "--resume", "--lambda", "3")


def test_an_existing_run_folder_is_not_overwritten_silently(tmp_path, tiny_data):
    run(tmp_path, "--method", "baseline")
    with pytest.raises(SystemExit, match="already holds a run"):
        run(tmp_path, "--method", "baseline")
    run(tmp_path, "--method", "baseline", "--overwrite")


def test_checkpoints_hold_only_tensors_and_plain_data(tmp_path, tiny_data):
    run(tmp_path, "--method", "csad")
    state = torch.load(tmp_path / "run" / "checkpoints" / "csad.pt", weights_only=True)
    assert state["result"]["metrics"]["test"]["auc"] >= 0
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


# ----- configuration


def test_config_file_values_are_used_and_flags_override_them(tmp_path, tiny_data):
    path = tmp_path / "c.yaml"
    path.write_text("method: baseline\nlambda: 2.5\nseed: 7\n")
    config = cfg.resolve({"seed": 3}, cfg.read_config_file(path))
    assert (config.method, config.lambda_, config.seed) == ("baseline", 2.5, 3)


def test_the_shipped_authors_schedule_is_a_valid_config_file():
    path = Path(train_cli.__file__).parent / "configs" / "authors_schedule.yaml"
    config = cfg.resolve({"dataset": "colored_mnist"}, cfg.read_config_file(path))
    assert (config.pretrain_epochs, config.bias_epochs, config.epochs) == (20, 20, 5)
    assert (config.lr, config.estimator_lr, config.weight_decay) == (5e-4, 5e-5, 5e-4)


def test_config_file_with_unknown_keys_or_bad_values_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lamda: 2\n")
    with pytest.raises(ValueError, match=r"unknown keys \['lamda'\]"):
        cfg.read_config_file(bad)
    bad.write_text("c: 1.5\n")
    with pytest.raises(ValueError, match=r"c must lie in \(0, 1\)"):
        cfg.resolve({}, cfg.read_config_file(bad))
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        cfg.read_config_file(bad)
    bad.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        cfg.read_config_file(bad)


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    text = capsys.readouterr().out
    for action in train_cli.parser()._actions:
        assert action.help, action.option_strings
    for flag in ("--dataset", "--method", "--data-root", "--epochs", "--batch-size", "--lambda", "--k-inner",
                 "--backend", "--device", "--seed", "--out", "--config", "--resume", "--quick", "--no-baseline"):
        assert flag in text


def test_evaluate_recomputes_the_metrics_of_a_finished_run(tmp_path, tiny_data, monkeypatch):
    import python.evaluate as evaluate_cli

    monkeypatch.setattr(evaluate_cli, "load_dataset", lambda config: tiny_bundle())
    trained = run(tmp_path, "--method", "csad")
    again = evaluate_cli.main(["--run", str(tmp_path / "run")])
    assert again["csad"].metrics == trained["metrics"]
    assert again["baseline"].metrics == trained["baseline"]["metrics"]
    # the leakage probe is deterministic and converged: evaluate reproduces metrics.json exactly
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert again["csad"].bias_leakage == saved["bias_leakage"]
    assert again["baseline"].bias_leakage == saved["baseline"]["bias_leakage"]
    with pytest.raises(FileNotFoundError, match="config.yaml does not exist"):
        evaluate_cli.main(["--run", str(tmp_path)])


def test_summarize_reports_mean_and_spread_over_seeds(tmp_path, tiny_data, capsys):
    from python import summarize

    for seed in ("0", "1"):
        train_cli.main(["--out", str(tmp_path / f"runs/csad_{seed}"), *FEW_EPOCHS, "--seed", seed])
    text = summarize.main([str(tmp_path / "runs")])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert set(rows) == {"baseline", "csad"} and "0,1" in rows["csad"] and "±" in rows["csad"]
    first = json.loads((tmp_path / "runs/csad_0/metrics.json").read_text())
    second = json.loads((tmp_path / "runs/csad_1/metrics.json").read_text())
    aucs = [first["metrics"]["test"]["auc"], second["metrics"]["test"]["auc"]]
    assert f"{sum(aucs) / 2:.3f}" in rows["csad"].split("|")[4]


# ----- bias pretraining until its loss plateaus; the authors' optimizer settings; the oracle's draws


def test_a_plateau_phase_ends_once_two_epochs_gain_less_than_one_percent():
    phase = Phase("pretrain_bias", 20, plateau="bias")
    history = [{"phase": "pretrain_target", "target": 0.1}]
    losses = []
    for loss in (2.0, 1.5, 1.2, 1.195, 1.19):
        losses.append(loss)
        history.append({"phase": "pretrain_bias", "bias": loss})
        if plateaued(history, phase):
            break
    assert losses == [2.0, 1.5, 1.2, 1.195, 1.19]  # 1.2 -> 1.19 over 2 epochs: < 1%; 1.5 -> 1.195 was not
    assert not plateaued(history[:4], phase)
    assert not plateaued(history, Phase("pretrain_bias", 20))  # no plateau loss: the phase runs all its epochs


def test_bias_pretraining_stops_at_the_plateau_and_the_run_records_how_long_it_ran(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(CSAD, "bias_step", lambda self, z, batch: 1.0)  # a flat loss: plateau after 3 epochs
    run(tmp_path, "--method", "csad", "--bias-epochs", "10")
    state = torch.load(tmp_path / "run" / "checkpoints" / "csad.pt", weights_only=True)
    assert [h["epoch"] for h in state["history"] if h["phase"] == "pretrain_bias"] == [1, 2, 3]


def test_estimator_lr_and_weight_decay_reach_the_optimizers():
    method, _ = make_csad(lr=1e-3, estimator_lr=5e-5, weight_decay=5e-4)
    groups = {name: opt.param_groups[0] for name, opt in method.optimizers.items()}
    assert groups["estimator"]["lr"] == 5e-5 and groups["target"]["lr"] == groups["bias"]["lr"] == 1e-3
    assert all(g["weight_decay"] == 5e-4 for g in groups.values())
    with pytest.raises(ValueError, match="estimator_lr"):
        cfg.resolve({"estimator_lr": 0.0})
    with pytest.raises(ValueError, match="weight_decay"):
        cfg.resolve({"weight_decay": -1.0})


def test_the_trainer_draws_the_oracles_rows_by_its_sampling_weights(monkeypatch):
    bundle = tiny_bundle()
    trainer = Trainer(cfg.TrainConfig(batch_size=32), bundle, "oracle", checkpoint_path=None,
                      device=torch.device("cpu"), show_progress=False)
    n = len(bundle.splits["train"])
    only_two = torch.zeros(n, dtype=torch.float64)
    only_two[[3, 7]] = 0.5
    monkeypatch.setattr(type(trainer.method), "sampling_weights", lambda self, y, bias: only_two)
    drawn = torch.cat(trainer.batches(torch.Generator().manual_seed(0)))
    assert len(drawn) == n and set(drawn.tolist()) == {3, 7}
