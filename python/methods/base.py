"""What a method is: the modules and optimizers it adds, its training phases, and one step per phase.

The trainer (``python.trainer``) owns the loop, batches, evaluation, checkpoints and progress; a method only
says which losses update which parameters. Every update goes through :meth:`Method.update`, which
back-propagates into the optimizer's own parameters only (``backward(inputs=...)``): a step can never leave
gradients on, or move, parameters it does not own.

Under torchrun a step sees this rank's shard of the global minibatch (``Batch.total`` rows in all). Losses are
then each rank's *contribution* to the loss of the global minibatch (per-sample means: the shard's sum / total;
losses every rank computes in full on gathered rows: divided by the world size), so that their sum over ranks is
the loss of one process, and :meth:`Method.update` sums the gradients over ranks before the optimizer step. The
parameters, identical on every rank at the start, then stay identical. Steps return contributions too; the
trainer adds them up over ranks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from torch import nn
from torch.nn import functional as nnf

from .. import distributed
from ..models import BranchedNet

if TYPE_CHECKING:
    from ..config import TrainConfig


class Task(Protocol):
    """What a method must know of the task: target classes (2: one logit and BCE), classes per bias head, and Ω's
    tolerance on the bias labels (DESIGN §2). A :class:`~python.data.base.DataBundle` is one; so is
    :class:`TaskSizes`."""

    n_classes: int
    bias_classes: tuple[int, ...]
    tolerance: int


@dataclass(frozen=True)
class TaskSizes:
    """A :class:`Task` given by its sizes alone (your own model and data: ``python.debiaser``)."""

    n_classes: int
    bias_classes: tuple[int, ...]
    tolerance: int = 0


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    plateau: str | None = None  # a loss of the phase: it ends early once that loss plateaus (python.trainer.plateaued)


@dataclass
class Batch:
    """A step's minibatch of n rows, or under torchrun this rank's shard of it: ``total`` is then the number of
    rows of the global minibatch (None in a single process)."""

    inputs: tuple[torch.Tensor, ...]
    y: torch.Tensor
    bias: torch.Tensor  # (n, heads) int64
    total: int | None = None

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``x (n, ...)`` of this shard -> ``(total, ...)`` of the global minibatch, differentiable (``x`` itself
        in a single process)."""
        return x if self.total is None else distributed.gather_rows(x, self.total)

    def replicated(self, loss: torch.Tensor) -> torch.Tensor:
        """This rank's contribution to ``loss``, computed in full on every rank from gathered rows."""
        return loss if self.total is None else distributed.replicated(loss)

    def share(self, loss: torch.Tensor) -> torch.Tensor:
        """This rank's contribution to a mean over the global minibatch of which ``loss`` is the shard's own mean."""
        return share_of_mean(loss, len(self.y), self.total)


def share_of_mean(mean: torch.Tensor, n: int, total: int | None) -> torch.Tensor:
    """This shard's contribution to the mean over the ``total`` rows of the global minibatch, given ``mean`` over
    its own ``n`` rows: ``mean · n / total`` (``mean`` itself in a single process, ``total`` None)."""
    return mean if total is None else mean * (n / total)


class Method(ABC):
    """What a method is: a name, the modules and optimizers it adds, its phases, and one step per phase.

    A subclass sets ``name`` (its ``--method`` value) and defines :meth:`phases` and :meth:`step`; it is not a
    method itself until it does (``Method`` cannot be instantiated). Every method owns the target path F, D_y, P_y
    and its optimizer ``"target"`` (Adam, ``--lr``), and has the shared steps and losses below;
    :class:`~python.methods.baseline.Baseline` is the method that does nothing else.
    """

    name: ClassVar[str]  # the method's --method value and key in python.methods.METHODS
    cross_sample_estimator: ClassVar[bool] = False  # whether it trains the cross-sample estimator M (--conditional)

    def __init__(self, net: BranchedNet, task: Task, config: TrainConfig) -> None:
        self.net, self.task, self.config = net, task, config
        self.extra = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.add_optimizer("target", [net.f, net.d_y, net.p_y])

    # ----- construction helpers
    def add_optimizer(self, name: str, modules: Iterable[nn.Module], lr: float | None = None) -> None:
        """Adam over ``modules`` with learning rate ``lr`` (None: ``--lr``) and ``--weight-decay``."""
        params = [p for m in modules for p in m.parameters()]
        self.optimizers[name] = torch.optim.Adam(params, lr=self.config.lr if lr is None else lr,
                                                 weight_decay=self.config.weight_decay)

    # ----- what each method defines
    @abstractmethod
    def phases(self) -> list[Phase]:
        """The training phases, in order; the trainer runs each for its epochs (or until its plateau)."""

    @abstractmethod
    def step(self, phase: str, batch: Batch) -> dict[str, float]:
        """One minibatch of ``phase``: the method's updates (each through :meth:`update`); returns each loss by
        name (this rank's contribution under torchrun)."""

    def sampling_weights(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor | None:
        """Probabilities ``(n,)`` of drawing each training row (``y (n,)``, ``bias (n, heads)``), or None for the
        trainer's default (class-balanced draws with ``--balanced-batches``, else a permutation)."""
        return None

    # ----- shared steps and losses
    def update(self, optimizer: str, loss: torch.Tensor, only: nn.Module | None = None) -> float:
        """One step of ``optimizer`` on ``loss``, gradients flowing into that optimizer's parameters only, or
        into the parameters of ``only`` among them (the others get no gradient, so the step leaves them alone)."""
        opt = self.optimizers[optimizer]
        params = [p for group in opt.param_groups for p in group["params"]]
        if only is not None:
            owned = {id(p) for p in params}
            params = [p for p in only.parameters() if id(p) in owned]
            if not params:
                raise ValueError(f"optimizer {optimizer!r} does not own the parameters it was asked to update")
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        distributed.sync_gradients(params)  # sum of the ranks' contributions (no-op in a single process)
        opt.step()
        return float(loss.detach())

    def target_loss(self, logits: torch.Tensor, y: torch.Tensor, total: int | None = None,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of ``logits (n,)`` (two classes) or ``(n, classes)`` against ``y (n,)``, each row's term
        times ``weight (n,)`` if given, averaged; as :func:`share_of_mean` for ``total``."""
        reduction = "mean" if weight is None else "none"
        if logits.dim() == 1:
            loss = nnf.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction=reduction)
        else:
            loss = nnf.cross_entropy(logits, y, reduction=reduction)
        mean = loss if weight is None else (weight * loss).mean()
        return share_of_mean(mean, len(y), total)

    def row_weights(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor | None:
        """Weights ``(n,)`` of the target loss's rows (``y (n,)``, ``bias (n, heads)``), or None: unweighted."""
        return None

    @staticmethod
    def bias_loss(logits: list[torch.Tensor], bias: torch.Tensor, total: int | None = None) -> torch.Tensor:
        """Mean over bias heads of the cross-entropy (``bias (n, heads)``; as :func:`share_of_mean` for ``total``)."""
        mean = torch.stack([nnf.cross_entropy(lg, bias[:, k]) for k, lg in enumerate(logits)]).mean()
        return share_of_mean(mean, len(bias), total)

    def target_step(self, batch: Batch) -> float:
        """Algorithm 2 line 10 (and the baseline): F, D_y, P_y minimise the target loss."""
        net = self.net
        logits = net.target_logits(net.target_branch(net.features(*batch.inputs)))
        weight = self.row_weights(batch.y, batch.bias)
        return self.update("target", self.target_loss(logits, batch.y, batch.total, weight))

    def state_dict(self) -> dict:
        return {"extra": self.extra.state_dict(), "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.extra.load_state_dict(state["extra"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
