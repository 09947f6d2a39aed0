"""Gradient reversal on a bias head (Kim et al., CVPR 2019, "Learning Not to Learn", adversarial part)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..models import BranchedNet
from .base import Batch, Method, Phase, Task

if TYPE_CHECKING:
    from ..config import TrainConfig


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the backward multiplies the gradient by ``-scale``."""
    return _ReverseGradient.apply(x, scale)


class GradientReversal(Method):
    """After target pretraining, one joint step per minibatch: the bias branch D_b, P_b on F's features minimises
    the bias loss while F, through a reversal layer, maximises it with weight λ (and keeps the target loss)."""

    name = "grad_reverse"

    def __init__(self, net: BranchedNet, task: Task, config: TrainConfig) -> None:
        super().__init__(net, task, config)
        self.add_optimizer("joint", [net.f, net.d_y, net.p_y, net.d_b, net.p_b])

    def phases(self) -> list[Phase]:
        return [Phase("pretrain_target", self.config.pretrain_epochs), Phase("adversarial", self.config.epochs)]

    def step(self, phase: str, batch: Batch) -> dict[str, float]:
        if phase == "pretrain_target":
            return {"target": self.target_step(batch)}
        net = self.net
        z = net.features(*batch.inputs)
        target = self.target_loss(net.target_logits(net.target_branch(z)), batch.y, batch.total)
        reversed_z = reverse_gradient(z, self.config.lambda_)
        bias = self.bias_loss(net.bias_logits(net.bias_branch(reversed_z)), batch.bias, batch.total)
        self.update("joint", target + bias)
        return {"target": float(target.detach()), "bias": float(bias.detach())}
