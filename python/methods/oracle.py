"""``oracle``: the baseline trained on an age-PD-balanced resample of the training split (a reference ceiling).

Not a debiasing method: it uses the bias labels to undo the confounding in the *data*. It trains on the largest
subsample of the training split in which the target is independent of the bias and the classes are balanced
within every bias cell: each epoch draws as many rows as the split holds, with replacement, row i with
probability ∝ min_c n_{b,c} / n_{b,y} for its bias cell b (all bias heads' labels together) and class y. A cell
then weighs C · min_c n_{b,c} (C classes): its rarest class is drawn like every row of a uniform draw and the
others are undersampled to match; no row is drawn more often than the rarest class's rows, so a cell with a
handful of patients (e.g. 5 PD subjects under 35 in the simulated cohort) is not repeated until the network
memorises it. A bias cell lacking some class is not drawn at all. What this reaches on the bias-free test split
is what removing the shortcut can buy (the oracle gap).

An earlier version kept each cell's share of the split and oversampled its rare class up to half the cell; on the
simulated mPower cohort (version 2) it scored no better than the baseline (docs/results.md), its within-bin AUC
below the baseline's: the network memorised the few young patients it saw over and over.
"""

from __future__ import annotations

import torch

from .base import Method


def balanced_cell_weights(y: torch.Tensor, bias: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Sampling weights ``(n,)`` (summing to 1) that make ``y (n,)`` independent of ``bias (n, heads)`` and balance
    the classes within each bias cell by undersampling: ∝ min_c n_{b,c} / n_{b,y}; zero in cells lacking a class."""
    if y.dim() != 1 or bias.dim() != 2 or len(bias) != len(y):
        raise ValueError(f"balanced_cell_weights: y must be (n,) and bias (n, heads), got {tuple(y.shape)} and "
                         f"{tuple(bias.shape)}")
    _, cell = torch.unique(bias, dim=0, return_inverse=True)
    n_cells = int(cell.max()) + 1
    counts = torch.bincount(cell * n_classes + y, minlength=n_cells * n_classes).view(n_cells, n_classes).double()
    complete = (counts > 0).all(1)
    if not complete.any():
        raise ValueError("balanced_cell_weights: no bias cell holds every target class")
    per_row = counts.min(1).values * complete / counts.clamp_min(1).T  # (classes, cells)
    w = per_row.T[cell, y]
    return w / w.sum()


class Oracle(Method):
    """The baseline on the bias-balanced resample (see the module docstring); a reference, not a debiasing method."""

    name = "oracle"

    def sampling_weights(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return balanced_cell_weights(y, bias, self.task.n_classes)
