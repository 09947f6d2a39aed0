"""One evaluation runs the model once per split: the trainer computes the logits and hands them to the dataset's
``extra_metrics`` (which never calls back into the trainer), plus one pass over each counterfactual copy the
dataset declares (Adult: six)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from python import config as cfg
from python.adult_metrics import adult_metrics
from python.data import adult
from python.data.adult import ADULT_FEATURES
from python.data.base import DataBundle, Split
from python.metrics import predicted_classes
from python.trainer import Trainer
from tests._train_helpers import tiny_bundle

ADULT_COPIES = 6  # two spouse copies and four gender/race copies


class RowCounter(nn.Module):
    """F wrapped to count the rows of every forward call."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f, self.rows = f, 0

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.rows += len(inputs[0])
        return self.f(*inputs)


def adult_like_split(n: int, seed: int) -> Split:
    """``x (n, 41)`` with 0/1 one-hot-like columns and Gaussian continuous ones, random ``y`` and sex bias."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, len(ADULT_FEATURES), generator=gen) < 0.3).float()
    x[:, :5] = torch.randn(n, 5, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    sex = x[:, ADULT_FEATURES.index("sex_Male")].long()
    return Split((x,), y, sex[:, None])


def adult_like_bundle() -> DataBundle:
    splits = {"train": adult_like_split(64, 1), "val": adult_like_split(600, 2), "test": adult_like_split(50, 3)}
    return DataBundle("adult", "simulated", "tiny Adult-shaped table", splits, 2, (2,), ("gender",),
                      extra_metrics=adult.extra_metrics, counterfactuals=adult.counterfactual_inputs)


def counted_trainer(tmp_path, bundle: DataBundle, dataset: str) -> Trainer:
    config = cfg.resolve({"dataset": dataset, "pretrain_epochs": 1, "bias_epochs": 0, "estimator_epochs": 0,
                          "epochs": 0, "batch_size": 32, "method": "baseline"})
    trainer = Trainer(config, bundle, "baseline", tmp_path / "baseline.pt", torch.device("cpu"), show_progress=False)
    trainer.net.f = RowCounter(trainer.net.f)
    return trainer


def test_one_evaluation_is_one_pass_over_the_split_when_the_dataset_declares_no_copies(tmp_path):
    seen = []
    bundle = tiny_bundle()
    bundle.extra_metrics = lambda logits, split: seen.append(logits) or {"n_logits": float(len(logits))}
    trainer = counted_trainer(tmp_path, bundle, "mpower")
    metrics = trainer.evaluate("val")
    assert trainer.net.f.rows == len(bundle.splits["val"])
    assert metrics["n_logits"] == 1.0 and seen[0][0].shape == (len(bundle.splits["val"]),)


def test_adult_evaluation_is_one_pass_over_the_split_and_one_per_counterfactual_copy(tmp_path):
    bundle = adult_like_bundle()
    trainer = counted_trainer(tmp_path, bundle, "adult")
    trainer.evaluate("val")
    # before the logits were passed: one pass for the target metrics and 7 more through the predict callback
    assert trainer.net.f.rows == (1 + ADULT_COPIES) * len(bundle.splits["val"])


def test_the_final_evaluation_passes_once_over_val_and_once_over_test_for_metrics_and_leakage(tmp_path):
    bundle = tiny_bundle()
    trainer = counted_trainer(tmp_path, bundle, "mpower")
    metrics, leakage = trainer.final_evaluation()
    assert trainer.net.f.rows == len(bundle.splits["val"]) + len(bundle.splits["test"])
    assert set(metrics) == {"val", "test"} and set(leakage) == {"age"}
    assert metrics["test"] == trainer.evaluate("test") and leakage == trainer.leakage()


def test_adult_metrics_from_the_passed_logits_equal_those_of_the_predict_callback(tmp_path):
    bundle = adult_like_bundle()
    trainer = counted_trainer(tmp_path, bundle, "adult")
    split = bundle.splits["val"]
    last = [m for m in trainer.net.p_y.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # logits centred on 0: both classes predicted, and the copies flip some predictions
        last.bias -= trainer.outputs(split.inputs)["logits"].median()
    from_logits = trainer.evaluate("val")
    by_callback = adult_metrics(lambda x: predicted_classes(trainer.outputs((x,))["logits"]), split.inputs[0], split.y)
    assert {k: from_logits[k] for k in by_callback} == pytest.approx(by_callback, nan_ok=True, rel=0, abs=0)
    assert by_callback["s_con"] < 1.0 and by_callback["gr_con"] < 1.0  # the copies' predictions do differ
