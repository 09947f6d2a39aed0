"""MINE estimate of I(features; bias label), minimised by the encoder (Ragonesi et al., CVPR-W 2021)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as nnf

from csad_kernels.module import mlp

from ..models import BranchedNet
from .base import Batch, Method, Phase, Task

if TYPE_CHECKING:
    from ..config import TrainConfig


class MINE(nn.Module):
    """Statistics network T(z, b) and the Donsker-Varadhan bound ``E_joint[T] − log E_marginal[e^T]``, with the
    marginal formed by pairing each z with the bias labels of a shuffled batch."""

    def __init__(self, feature_dim: int, bias_classes: tuple[int, ...], hidden: int = 64) -> None:
        super().__init__()
        self.bias_classes = bias_classes
        self.t = mlp((feature_dim + sum(bias_classes), hidden, hidden, 1))

    def encode(self, bias: torch.Tensor) -> torch.Tensor:
        return torch.cat([nnf.one_hot(bias[:, k], n).float() for k, n in enumerate(self.bias_classes)], -1)

    def forward(self, z: torch.Tensor, bias: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
        b = self.encode(bias).to(z.dtype)
        joint = self.t(torch.cat([z, b], -1)).squeeze(-1)
        marginal = self.t(torch.cat([z, b[permutation]], -1)).squeeze(-1)
        return joint.mean() - (torch.logsumexp(marginal, 0) - math.log(len(marginal)))


class MILabel(Method):
    """After target pretraining, per minibatch: K steps of T maximising the MINE bound on detached features;
    then F, D_y, P_y minimise the target loss plus λ times the bound.

    Under torchrun the bound, a cross-sample statistic like CSAD's estimator, is computed on the all-gathered
    features and bias labels of the global minibatch (or on each rank's shard with ``local_estimator``)."""

    name = "mi_label"

    def __init__(self, net: BranchedNet, task: Task, config: TrainConfig) -> None:
        super().__init__(net, task, config)
        self.extra["mine"] = MINE(net.f.out_dim, task.bias_classes)
        self.add_optimizer("mine", [self.extra["mine"]], lr=self.config.estimator_lr)

    def phases(self) -> list[Phase]:
        return [Phase("pretrain_target", self.config.pretrain_epochs), Phase("adversarial", self.config.epochs)]

    def step(self, phase: str, batch: Batch) -> dict[str, float]:
        net, mine = self.net, self.extra["mine"]
        if phase == "pretrain_target":
            return {"target": self.target_step(batch)}
        local = batch.total is None or self.config.local_estimator
        bias = batch.bias if local else batch.gather(batch.bias)
        permutation = torch.randperm(len(bias), device=bias.device)

        def bound(z: torch.Tensor) -> torch.Tensor:
            """This rank's contribution to the MINE bound, from its features ``z (n, d)``."""
            if local:
                return batch.share(mine(z, bias, permutation))
            return batch.replicated(mine(batch.gather(z), bias, permutation))

        with torch.no_grad():
            z = net.features(*batch.inputs)
        for _ in range(self.config.k_inner):
            mi = -self.update("mine", -bound(z))
        z = net.features(*batch.inputs)
        target = self.target_loss(net.target_logits(net.target_branch(z)), batch.y, batch.total)
        mi_encoder = bound(z)
        self.update("target", target + self.config.lambda_ * mi_encoder)
        return {"target": float(target.detach()), "mi": mi, "mi_adversarial": float(mi_encoder.detach())}
