"""``baseline``: vanilla training, the reference every debiasing method is compared with."""

from __future__ import annotations

from .base import Batch, Method, Phase


class Baseline(Method):
    """Vanilla training of F, D_y and P_y on the target loss, one phase of ``--pretrain-epochs + --epochs`` epochs; no
    bias branch, no estimator, no debiasing loss."""

    name = "baseline"

    def phases(self) -> list[Phase]:
        return [Phase("train", self.config.pretrain_epochs + self.config.epochs)]

    def step(self, phase: str, batch: Batch) -> dict[str, float]:
        return {"target": self.target_step(batch)}
