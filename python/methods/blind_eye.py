"""Confusion loss (Alvi et al., ECCV-W 2018, "Turning a Blind Eye")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as nnf

from ..models import BranchedNet
from .base import Batch, Method, Phase, Task, share_of_mean

if TYPE_CHECKING:
    from ..config import TrainConfig


def confusion_loss(logits: list[torch.Tensor], total: int | None = None) -> torch.Tensor:
    """Mean over heads of the cross-entropy between each head's prediction ``(n, classes_k)`` and the uniform
    distribution (as :func:`~python.methods.base.share_of_mean` for ``total``)."""
    mean = torch.stack([-nnf.log_softmax(lg, -1).mean(-1).mean() for lg in logits]).mean()
    return share_of_mean(mean, len(logits[0]), total)


class BlindEye(Method):
    """After target pretraining, per minibatch: the bias branch D_b, P_b learns the bias from detached
    features; then F, D_y, P_y minimise the target loss plus λ times the confusion loss of that (frozen) head."""

    name = "blind_eye"

    def __init__(self, net: BranchedNet, task: Task, config: TrainConfig) -> None:
        super().__init__(net, task, config)
        self.add_optimizer("bias", [net.d_b, net.p_b])

    def phases(self) -> list[Phase]:
        return [Phase("pretrain_target", self.config.pretrain_epochs), Phase("adversarial", self.config.epochs)]

    def step(self, phase: str, batch: Batch) -> dict[str, float]:
        net = self.net
        if phase == "pretrain_target":
            return {"target": self.target_step(batch)}
        with torch.no_grad():
            z = net.features(*batch.inputs)
        bias = self.update("bias", self.bias_loss(net.bias_logits(net.bias_branch(z)), batch.bias, batch.total))
        z = net.features(*batch.inputs)
        target = self.target_loss(net.target_logits(net.target_branch(z)), batch.y, batch.total)
        confusion = confusion_loss(net.bias_logits(net.bias_branch(z)), batch.total)
        self.update("target", target + self.config.lambda_ * confusion)
        return {"target": float(target.detach()), "bias": bias, "confusion": float(confusion.detach())}
