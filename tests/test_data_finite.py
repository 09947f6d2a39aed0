"""Non-finite features: a DataBundle refuses them, and a loss that goes non-finite on them blames the data."""

from __future__ import annotations

import pytest
import torch

from python import config as cfg
from python.data.base import DataBundle
from python.trainer import Trainer
from tests._train_helpers import tiny_bundle, tiny_split


def test_split_reports_the_rows_with_non_finite_inputs():
    split = tiny_split(10, 0)
    assert split.non_finite_rows() == []
    taps, mask = split.inputs
    taps[3, 2, 5] = float("inf")
    taps[7, 0, 0] = float("nan")
    (index, rows), = split.non_finite_rows()  # the bool mask is never reported
    assert index == 0 and rows.tolist() == [3, 7]


def test_a_bundle_with_non_finite_features_is_refused_naming_split_and_rows():
    splits = {"train": tiny_split(20, 1), "val": tiny_split(8, 2), "test": tiny_split(8, 3)}
    splits["val"].inputs[0][4, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"mpower: input 0 of the val split holds non-finite values after "
                                         r"preprocessing in 1 rows \(first: \[4\]\)"):
        DataBundle("mpower", "simulated", "tiny", splits, 2, (8,), ("age",))


def _trainer(tmp_path, bundle: DataBundle) -> Trainer:
    config = cfg.resolve({"pretrain_epochs": 1, "bias_epochs": 0, "estimator_epochs": 0, "epochs": 0,
                          "batch_size": 32, "method": "baseline"})
    return Trainer(config, bundle, "baseline", tmp_path / "baseline.pt", torch.device("cpu"), show_progress=False)


def test_a_non_finite_loss_on_non_finite_inputs_blames_the_data_and_names_the_split(tmp_path):
    bundle = tiny_bundle()
    bundle.splits["train"].inputs[0][:, 0, 0] = float("nan")  # corrupted after the bundle's own check
    with pytest.raises(FloatingPointError, match=r"because the inputs are not finite: \d+ rows of the train split "
                                                 r"of mpower .* the data is corrupt, not --lr or --lambda") as info:
        _trainer(tmp_path, bundle).fit()
    assert "try a smaller" not in str(info.value)


def test_a_non_finite_loss_on_finite_inputs_still_points_at_the_step_size(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, tiny_bundle())
    monkeypatch.setattr(trainer.method, "step", lambda phase, batch: {"target": float("nan")})
    with pytest.raises(FloatingPointError, match="loss target is nan; try a smaller --lr or --lambda"):
        trainer.fit()
