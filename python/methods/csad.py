"""CSAD (Algorithm 2 of the supplement), the authors' multi-similarity estimator, and the ablations: content-only,
structure-only, and the JSD estimator. With ``--conditional`` the estimator counts only pairs of the same target."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

import csad_kernels as ck

from ..models import BranchedNet
from .base import Batch, Method, Phase, Task

if TYPE_CHECKING:
    from ..config import TrainConfig


class CSAD(Method):
    """Cross-sample adversarial debiasing.

    Pretraining: F, D_y, P_y on the target loss; D_b, P_b on the bias loss with F frozen; M maximising I.
    Then per minibatch: one target step of F, D_y, P_y; K steps of D_b, P_b on detached features; K steps
    of M maximising I on detached h^y, h^b; one step of F alone minimising λ·I.

    F's adversarial step uses the optimizer of the target step (Adam), restricted to F's parameters: Adam
    divides each step by a running scale of the gradients it has seen, so a separate Adam for λ·I alone would
    cancel λ and move F by the learning rate whatever I's gradient is. Sharing F's moment estimates between the
    target loss and λ·I makes λ weigh one against the other, as in a single joint loss.

    Under torchrun the estimator all-gathers u = My(h^y), v = Mb(h^b) and the bias labels of every rank's shard
    (with gradients), so Ω and the graphs span the global minibatch and I is the one a single process computes on
    it; ``local_estimator`` keeps each rank's estimate on its own shard instead.
    """

    name = "csad"
    similarity, estimator = "joint", "cs"
    cross_sample_estimator = True

    def __init__(self, net: BranchedNet, task: Task, config: TrainConfig) -> None:
        super().__init__(net, task, config)
        sizes_y, sizes_b = net.estimator_sizes
        self.extra["m"] = ck.CrossSampleMI(
            sizes_y, sizes_b, alpha=config.alpha, tau=config.tau, c=config.c, tolerance=task.tolerance,
            similarity=self.similarity, estimator=self.estimator, backend=config.backend,
        )
        self.add_optimizer("bias", [net.d_b, net.p_b])
        self.add_optimizer("estimator", [self.extra["m"]], lr=config.estimator_lr)

    def phases(self) -> list[Phase]:
        c = self.config
        return [Phase("pretrain_target", c.pretrain_epochs), Phase("pretrain_bias", c.bias_epochs, plateau="bias"),
                Phase("pretrain_estimator", c.estimator_epochs), Phase("adversarial", c.epochs)]

    def mutual_information(self, hy: torch.Tensor, hb: torch.Tensor, batch: Batch) -> torch.Tensor:
        """I(h^y; h^b) of ``hy (n, d_y)``, ``hb (n, d_b)`` on the minibatch (0-d); under torchrun this rank's
        contribution to it (see ``python.methods.base``)."""
        m = self.extra["m"]
        groups = batch.y if self.config.conditional else None
        if batch.total is None:
            return m(hy, hb, batch.bias, groups=groups)
        if self.config.local_estimator:
            return batch.share(m(hy, hb, batch.bias, groups=groups))
        u, v = batch.gather(m.head_y(hy)), batch.gather(m.head_b(hb))
        groups = None if groups is None else batch.gather(groups)
        return batch.replicated(m.estimate(u, v, batch.gather(batch.bias), groups=groups))

    def bias_step(self, z: torch.Tensor, batch: Batch) -> float:
        """D_b, P_b minimise the bias loss on detached features ``z``."""
        net = self.net
        return self.update("bias", self.bias_loss(net.bias_logits(net.bias_branch(z)), batch.bias, batch.total))

    def estimator_step(self, hy: torch.Tensor, hb: torch.Tensor, batch: Batch) -> float:
        """M maximises I on detached ``hy``, ``hb``; returns the estimate I."""
        return -self.update("estimator", -self.mutual_information(hy, hb, batch))

    def adversarial_step(self, batch: Batch) -> float:
        """F alone minimises λ·I (D_y, D_b and M receive no update); returns I."""
        net = self.net
        z = net.features(*batch.inputs)
        mi = self.mutual_information(net.target_branch(z), net.bias_branch(z), batch)
        self.update("target", self.config.lambda_ * mi, only=net.f)
        return float(mi.detach())

    @torch.no_grad()
    def detached_branches(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h^y and h^b of features ``z`` without a graph: the inputs of M's steps."""
        return self.net.target_branch(z), self.net.bias_branch(z)

    def detached(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features z = F(x), h^y and h^b of ``batch`` without a graph."""
        with torch.no_grad():
            z = self.net.features(*batch.inputs)
        return (z, *self.detached_branches(z))

    def step(self, phase: str, batch: Batch) -> dict[str, float]:
        if phase == "pretrain_target":
            return {"target": self.target_step(batch)}
        if phase == "pretrain_bias":
            z, _, _ = self.detached(batch)
            return {"bias": self.bias_step(z, batch)}
        if phase == "pretrain_estimator":
            _, hy, hb = self.detached(batch)
            return {"mi": self.estimator_step(hy, hb, batch)}
        losses = {"target": self.target_step(batch)}
        z, _, _ = self.detached(batch)
        for _ in range(self.config.k_inner):
            losses["bias"] = self.bias_step(z, batch)
        hy, hb = self.detached_branches(z)  # F is unchanged since z; D_b has moved
        for _ in range(self.config.k_inner):
            losses["mi"] = self.estimator_step(hy, hb, batch)
        losses["mi_adversarial"] = self.adversarial_step(batch)
        return losses


class CSADMultiSimilarity(CSAD):
    """CSAD with the estimator of the authors' released code: a multi-similarity loss with one learnable scale per
    side and a 1/w factor (DESIGN §2, estimator="ms"), which cannot collapse its own scale as Eq. 2 does."""

    name, estimator = "csad_ms", "ms"


class CSADContent(CSAD):
    """CSAD with the content similarity only (Eq. 3)."""

    name, similarity = "csad_content", "content"


class CSADStructural(CSAD):
    """CSAD with the local-structure similarity only (Eq. 8)."""

    name, similarity = "csad_struc", "structural"


class AdversarialJSD(CSAD):
    """Content similarity with the Jensen-Shannon estimator (Eq. 1) in place of Eq. 2."""

    name, similarity, estimator = "ad_jsd", "content", "jsd"
