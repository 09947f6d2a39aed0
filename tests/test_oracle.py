"""The oracle's resample: PD independent of the bias cell, classes balanced within it by undersampling."""

from __future__ import annotations

import pytest
import torch

from python.config import TrainConfig
from python.methods import METHODS
from python.methods.oracle import balanced_cell_weights
from python.models import DebiasNet
from tests._train_helpers import tiny_bundle


def test_weights_make_the_target_independent_of_the_bias_by_undersampling_each_cells_common_class():
    # bin 0: 6 controls, 2 PD; bin 1: 1 control, 3 PD; bin 2: controls only (cannot be balanced: not drawn)
    bias = torch.tensor([0] * 8 + [1] * 4 + [2] * 3).view(-1, 1)
    y = torch.tensor([0] * 6 + [1] * 2 + [0] + [1] * 3 + [0] * 3)
    w = balanced_cell_weights(y, bias, 2).double()
    assert torch.isclose(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert (w[12:] == 0).all()
    mass = {(b, c): float(w[(bias[:, 0] == b) & (y == c)].sum()) for b in (0, 1) for c in (0, 1)}
    for b in (0, 1):
        assert mass[b, 0] == pytest.approx(mass[b, 1])  # P(PD | bin) = 1/2 in every bin
    # a cell weighs (classes x its rarest class's count): bin 0 2 x 2, bin 1 2 x 1
    assert mass[0, 0] + mass[0, 1] == pytest.approx(4 / 6)
    assert w[0] == pytest.approx(w[5])  # rows of one cell and class are equally likely
    rarest = torch.tensor([6, 7, 8])  # bin 0's PD rows and bin 1's control row
    assert torch.allclose(w[rarest], w.max().expand(3))  # no row is drawn more often than a rarest-class row


def test_weights_reject_bias_without_any_complete_cell_and_bad_shapes():
    with pytest.raises(ValueError, match="no bias cell"):
        balanced_cell_weights(torch.tensor([0, 0, 1, 1]), torch.tensor([[0], [0], [1], [1]]), 2)
    with pytest.raises(ValueError, match=r"\(n, heads\)"):
        balanced_cell_weights(torch.tensor([0, 1]), torch.tensor([0, 1]), 2)


def test_oracle_is_registered_and_the_others_keep_the_default_draws():
    assert METHODS["oracle"].name == "oracle"
    assert METHODS["baseline"].sampling_weights(None, torch.zeros(2, 1), torch.zeros(2, 1)) is None  # type: ignore[arg-type]


def test_the_oracles_loss_over_the_training_split_is_the_balanced_distributions_loss():
    bundle = tiny_bundle()
    net = DebiasNet("mpower", bundle.splits["train"].inputs, 2, bundle.bias_classes)
    oracle = METHODS["oracle"](net, bundle, TrainConfig())
    train = bundle.splits["train"]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(len(train.y), generator=gen)
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(logits, train.y.float(), reduction="none")
    balanced = balanced_cell_weights(train.y, train.bias, 2).float()  # the resample's probabilities, sum 1
    weighted = oracle.target_loss(logits, train.y, weight=oracle.row_weights(train.y, train.bias))
    assert torch.isclose(weighted, (balanced * per_row).sum(), rtol=1e-5)
    assert not torch.isclose(weighted, per_row.mean(), rtol=1e-2)  # the tiny cohort is confounded: weights matter
    # a rarest-class row weighs more than a row of its cell's common class
    w = oracle.row_weight
    assert (w <= w.max()).all() and w.max() > w[w > 0].min()
