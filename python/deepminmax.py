"""DeepMinMax (DESIGN §6): debias frozen features Z by a learned map h_θ: Z → Z̃.

Objective, minimised over θ and φ: ``λ·L_d + (1−λ)·L_r`` where

* ``L_d = CLUB(B; Z̃)`` is the contrastive log-ratio upper bound of I(B; Z̃) (Cheng et al. 2020) with a variational
  ``q(B | Z̃)`` (categorical per discrete bias column, diagonal Gaussian for continuous B), and q is trained by its own
  log-likelihood on detached Z̃ (``q_steps`` Adam steps) before every step of h_θ: with a single step q lags behind
  h_θ, the bound goes negative and h_θ learns to fool q instead of removing B (leakage stayed near 0.9 on a
  synthetic case where five steps bring it to chance);
* ``L_r = −log m_φ(Z | Z̃, B)`` is the Gaussian negative log-density of the vector Z (summed over its dims, averaged
  over samples) under a 2-layer MLP m_φ that sees Z̃ and B, so Z̃ must keep what Z holds beyond B (the retaining
  term that prevents collapse). Averaging over dims instead would weaken it by the feature width.

Fit on standardised features (``python.postprocess`` does): L_r is a differential entropy and depends on Z's scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from csad_kernels.module import mlp

from .trainer import split_into_batches

LOG_2PI = math.log(2 * math.pi)
# q runs q_steps times per step: at the width of 1024-d conv features it would cost more than h_θ and m_φ together
Q_HIDDEN_MAX = 128


def as_columns(b: torch.Tensor) -> torch.Tensor:
    """``b (n,)`` or ``(n, K)`` → ``(n, K)``."""
    if b.dim() == 1:
        return b.unsqueeze(1)
    if b.dim() != 2:
        raise ValueError(f"bias must be (n,) or (n, K), got shape {tuple(b.shape)}")
    return b


class CLUB(nn.Module):
    """CLUB upper bound of I(B; Z̃) with a variational ``q(B | Z̃)``.

    Discrete B (``classes`` given): one categorical head per bias column, an MLP giving logits; the bound is
    ``E_joint[log q(b|z)] − E_z E_b'[log q(b'|z)]`` over all pairs of the batch (the second term uses the batch's
    label frequencies), summed over columns. Continuous B (``classes=None``, ``bias_dim`` columns): an MLP giving
    mean and log-variance of a diagonal Gaussian, with the all-pairs negative term computed in closed form.
    """

    def __init__(self, z_dim: int, classes: Sequence[int] | None = None, bias_dim: int = 1, hidden: int = 64) -> None:
        super().__init__()
        self.classes = tuple(int(c) for c in classes) if classes is not None else None
        if self.classes is not None:
            self.heads = nn.ModuleList(mlp([z_dim, hidden, c]) for c in self.classes)
        else:
            self.net = mlp([z_dim, hidden, 2 * bias_dim])
        self.bias_dim = len(self.classes) if self.classes is not None else bias_dim

    @property
    def discrete(self) -> bool:
        return self.classes is not None

    def log_likelihood(self, z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ``log q(b | z)`` (summed over bias columns); ``z (n, d)``, ``b (n,)``/``(n, K)``."""
        b = as_columns(b)
        if self.discrete:
            return sum(-nn.functional.cross_entropy(head(z), b[:, k].long()) for k, head in enumerate(self.heads))
        mu, logvar = self.net(z).chunk(2, dim=-1)
        nll = 0.5 * ((b.float() - mu).square() / logvar.exp() + logvar + LOG_2PI)
        return -nll.sum(-1).mean()

    def forward(self, z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The CLUB estimate (a scalar) of I(B; Z̃) on the batch ``z (n, d)``, ``b (n,)`` or ``(n, K)``."""
        b = as_columns(b)
        if self.discrete:
            return sum(self._categorical(head(z), b[:, k].long(), c)
                       for k, (head, c) in enumerate(zip(self.heads, self.classes, strict=True)))
        return self._gaussian(z, b.float())

    @staticmethod
    def _categorical(logits: torch.Tensor, b: torch.Tensor, classes: int) -> torch.Tensor:
        """``logits (n, C)``, ``b (n,)``: mean_i log q(b_i|z_i) − mean_{i,j} log q(b_j|z_i)."""
        log_q = logits.log_softmax(-1)
        positive = log_q.gather(1, b.unsqueeze(1)).squeeze(1)
        frequency = torch.bincount(b, minlength=classes).to(log_q.dtype) / len(b)
        negative = log_q @ frequency
        return (positive - negative).mean()

    def _gaussian(self, z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``b (n, K)`` float: all-pairs CLUB of a diagonal Gaussian (the log-variance term cancels)."""
        mu, logvar = self.net(z).chunk(2, dim=-1)
        inv_var = (-logvar).exp()
        positive = -0.5 * (b - mu).square() * inv_var
        # mean_j (b_j − mu_i)^2 = mean(b^2) − 2 mu_i mean(b) + mu_i^2
        pair_sq = b.square().mean(0) - 2 * mu * b.mean(0) + mu.square()
        negative = -0.5 * pair_sq * inv_var
        return (positive - negative).sum(-1).mean()


class DeepMinMax(nn.Module):
    """h_θ (3-layer MLP, hidden = z_dim) with the CLUB critic q and the Gaussian retainer m_φ (DESIGN §6).

    ``classes``: classes per discrete bias column, or None for continuous B with ``bias_dim`` columns.
    Use :meth:`for_data` to infer them from ``b``; then :meth:`fit` and :meth:`transform`.
    """

    def __init__(self, z_dim: int, classes: Sequence[int] | None = None, bias_dim: int = 1, *,
                 lambda_: float = 0.5, batch_size: int = 128, lr: float = 0.005, q_steps: int = 5) -> None:
        super().__init__()
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda_ must lie in [0, 1], got {lambda_!r}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (CLUB compares samples), got {batch_size!r}")
        if q_steps < 1:
            raise ValueError(f"q_steps must be >= 1, got {q_steps!r}")
        self.z_dim, self.lambda_, self.batch_size, self.lr = z_dim, float(lambda_), batch_size, lr
        self.q_steps = q_steps
        self.classes = tuple(int(c) for c in classes) if classes is not None else None
        b_width = sum(self.classes) if self.classes is not None else bias_dim
        self.h = mlp([z_dim, z_dim, z_dim, z_dim])
        self.q = CLUB(z_dim, self.classes, bias_dim, hidden=min(max(z_dim, 16), Q_HIDDEN_MAX))
        self.m = mlp([z_dim + b_width, z_dim, 2 * z_dim])

    @classmethod
    def for_data(cls, z: torch.Tensor, b: torch.Tensor, **kwargs: float) -> DeepMinMax:
        """Build for ``z (n, d)`` and ``b``: integer ``b`` is categorical (classes = max + 1 per column), float is
        continuous."""
        b = as_columns(b)
        if b.dtype.is_floating_point:
            return cls(z.shape[1], None, b.shape[1], **kwargs)
        classes = [int(b[:, k].max()) + 1 for k in range(b.shape[1])]
        return cls(z.shape[1], classes, **kwargs)

    def encode_bias(self, b: torch.Tensor) -> torch.Tensor:
        """``b (n,)``/``(n, K)`` → ``(n, width)``: concatenated one-hots (discrete) or the float values."""
        b = as_columns(b)
        if self.classes is None:
            return b.float()
        return torch.cat([nn.functional.one_hot(b[:, k].long(), c).float() for k, c in enumerate(self.classes)], 1)

    def retain_nll(self, z: torch.Tensor, zt: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """L_r: −log N(z; m_φ(z̃, b)) summed over dims, mean over samples; ``z, zt (n, d)``."""
        mu, logvar = self.m(torch.cat([zt, self.encode_bias(b)], 1)).chunk(2, dim=-1)
        logvar = logvar.clamp(-10, 10)
        return (0.5 * ((z - mu).square() * (-logvar).exp() + logvar + LOG_2PI)).sum(-1).mean()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Z̃ = h_θ(Z), ``(n, d)``."""
        return self.h(z)

    def step(self, z: torch.Tensor, b: torch.Tensor, opt_q: torch.optim.Optimizer,
             opt_main: torch.optim.Optimizer) -> dict[str, float]:
        """One minibatch: q maximises its log-likelihood on detached Z̃, then h_θ, m_φ minimise the objective."""
        zt = self.h(z)
        for _ in range(self.q_steps):
            opt_q.zero_grad()
            (-self.q.log_likelihood(zt.detach(), b)).backward()
            opt_q.step()
        club = self.q(zt, b)
        retain = self.retain_nll(z, zt, b)
        loss = self.lambda_ * club + (1 - self.lambda_) * retain
        opt_main.zero_grad()
        loss.backward()
        opt_main.step()
        return {"loss": loss.item(), "club": club.item(), "retain_nll": retain.item()}

    def fit(self, z: torch.Tensor, b: torch.Tensor, *, epochs: int = 200, seed: int = 0,
            progress: bool = False) -> list[dict[str, float]]:
        """Train on ``z (n, d)`` float and ``b (n,)``/``(n, K)``; returns the per-epoch mean losses."""
        z, b = z.float(), as_columns(b)
        if z.dim() != 2 or z.shape[1] != self.z_dim or len(b) != len(z):
            raise ValueError(f"fit needs z (n, {self.z_dim}) and b with n rows, got {tuple(z.shape)}, "
                             f"{tuple(b.shape)}")
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt_q = torch.optim.Adam(self.q.parameters(), lr=self.lr)
        opt_main = torch.optim.Adam([*self.h.parameters(), *self.m.parameters()], lr=self.lr)
        history = []
        for _ in tqdm(range(epochs), desc="deepminmax", disable=not progress, dynamic_ncols=True):
            chunks = split_into_batches(torch.randperm(len(z), generator=gen), self.batch_size)
            sums: dict[str, float] = {}
            for index in chunks:
                for key, value in self.step(z[index], b[index], opt_q, opt_main).items():
                    sums[key] = sums.get(key, 0.0) + value
            history.append({k: v / len(chunks) for k, v in sums.items()})
        return history

    @torch.no_grad()
    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """Z̃ = h_θ(Z) for ``z (n, d)``, ``(n, d)`` float."""
        return self.h(z.float())
