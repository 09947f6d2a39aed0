"""``oracle``: the baseline trained on an age-PD-balanced resample of the training split (a reference ceiling).

Not a debiasing method: it uses the bias labels to undo the confounding in the *data*. Each epoch draws as many
training rows as the split holds, with replacement, so that every bias cell keeps its share of the split and the
target classes are equally likely within it: row i is drawn with probability ∝ n_b / (C · n_{b,y}) for its bias
cell b (all bias heads' labels together) and class y, C the number of classes. The target is then independent of
the bias, and classes balanced, in what the network sees; a bias cell lacking some class is not drawn at all.
What this reaches on the bias-free test split is what removing the shortcut can buy (the oracle gap).
"""

from __future__ import annotations

import torch

from python.methods.base import Method


def balanced_cell_weights(y: torch.Tensor, bias: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Sampling weights ``(n,)`` (summing to 1) that make ``y (n,)`` independent of ``bias (n, heads)``, keep each
    bias cell's share and balance the classes within it; zero in bias cells lacking a class."""
    if y.dim() != 1 or bias.dim() != 2 or len(bias) != len(y):
        raise ValueError(f"balanced_cell_weights: y must be (n,) and bias (n, heads), got {tuple(y.shape)} and "
                         f"{tuple(bias.shape)}")
    _, cell = torch.unique(bias, dim=0, return_inverse=True)
    n_cells = int(cell.max()) + 1
    counts = torch.bincount(cell * n_classes + y, minlength=n_cells * n_classes).view(n_cells, n_classes).double()
    complete = (counts > 0).all(1)
    if not complete.any():
        raise ValueError("balanced_cell_weights: no bias cell holds every target class")
    per_cell = counts.sum(1) * complete / (n_classes * counts.clamp_min(1).T)  # (classes, cells)
    w = per_cell.T[cell, y]
    return w / w.sum()


class Oracle(Method):
    """The baseline on the bias-balanced resample (see the module docstring); a reference, not a debiasing method."""

    name = "oracle"

    def sampling_weights(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return balanced_cell_weights(y, bias, self.bundle.n_classes)
