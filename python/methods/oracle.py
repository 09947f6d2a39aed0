"""``oracle``: the baseline trained on the age-PD-balanced training distribution (a reference ceiling).

Not a debiasing method: it uses the bias labels to undo the confounding in the *data*. Its target is the largest
subsample of the training split in which the target is independent of the bias and the classes are balanced
within every bias cell (each cell's commoner classes undersampled to its rarest class's count; a cell lacking a
class is left out): ``balanced_cell_weights`` gives that resample's row probabilities, ∝ min_c n_{b,c} / n_{b,y}.
The oracle trains on that distribution by importance weighting: rows are drawn like the baseline's (every row once
per epoch) and each row's loss is weighted by its probability under the resample (≤ the rarest class's; normalised
to mean 1 over the split), so the expected loss is the resample's, but no row is dropped or repeated. What this
reaches on the bias-free test split is what removing the shortcut can buy (the oracle gap).

Two earlier versions drew the resample itself, N rows per epoch with replacement: first oversampling each bin's
rare class up to half the bin (the network memorised the few young patients it saw over and over), then
undersampling. On the simulated mPower cohort the undersampling draws discarded about two thirds of the training
subjects each epoch while repeating the kept ones three times: on a version 3 screen the weighted loss scored
0.786 test AUC where the draws scored 0.770 (seed 0; docs/results.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..models import BranchedNet
from .base import Task
from .baseline import Baseline

if TYPE_CHECKING:
    from ..config import TrainConfig


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


def cell_codes(bias: torch.Tensor, bias_classes: tuple[int, ...]) -> torch.Tensor:
    """One integer per row of ``bias (n, heads)`` naming its bias cell (mixed radix over ``bias_classes``): ``(n,)``."""
    code = torch.zeros(len(bias), dtype=torch.long, device=bias.device)
    for k, size in enumerate(bias_classes):
        code = code * size + bias[:, k]
    return code


class Oracle(Baseline):
    """The baseline on the bias-balanced training distribution (see the module docstring); a reference, not a
    debiasing method. Rows are drawn like the baseline's; each row's loss is weighted by its (bias cell, class)
    weight ≤ 1, normalised by the mean weight over the training split."""

    name = "oracle"

    def __init__(self, net: BranchedNet, task: Task, config: TrainConfig) -> None:
        super().__init__(net, task, config)
        splits = getattr(task, "splits", None)
        if splits is None or "train" not in splits:
            raise ValueError("method 'oracle' needs a task with the training split's labels (a DataBundle), "
                             f"got {type(task).__name__}")
        y, bias = splits["train"].y.cpu(), splits["train"].bias.cpu()
        w = balanced_cell_weights(y, bias, task.n_classes)
        w = w / w.max()  # the rarest class of each balanced cell weighs 1
        n_cells = math.prod(task.bias_classes)
        table = torch.zeros(n_cells, task.n_classes, dtype=torch.float64)
        table[cell_codes(bias, task.bias_classes), y] = w
        self.row_weight = (table / w.mean()).float()  # (cells, classes): mean weight 1 over the training rows

    def row_weights(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.row_weight.to(y.device)[cell_codes(bias, self.task.bias_classes), y]
