"""Networks of DESIGN.md §3: feature extractor F, target branch D_y → P_y, bias branch D_b → P_b, sizes of M.

ReLU follows every layer but the last of each predictor (the paper's tables omit it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as nnf

from csad_kernels.module import mlp

from .resnet import resnet18

if TYPE_CHECKING:
    from .data.spec import DatasetSpec


class CausalConv1d(nn.Conv1d):
    """Dilated 1-D convolution padded on the left only, so output t sees inputs ≤ t and keeps the length."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__(n_in, n_out, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nnf.pad(x, (self.left_pad, 0)))


class TCN(nn.Module):
    """Temporal convolutional network for tap sequences (mPower).

    Input channels are standardised with fixed statistics of the training taps (see :func:`masked_channel_stats`),
    then ``layers`` causal dilated convolutions (dilation 1, 2, 4, …), kernel ``kernel_size``, ``filters``
    channels, ReLU and a residual connection per layer; masked global average pooling over valid taps.
    forward(taps (n, C, T), mask (n, T) bool) -> (n, filters).
    """

    def __init__(self, n_in: int, *, layers: int = 6, kernel_size: int = 5, filters: int = 64,
                 channel_mean: torch.Tensor | None = None, channel_std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("channel_mean", torch.zeros(n_in) if channel_mean is None else channel_mean.float())
        self.register_buffer("channel_std", torch.ones(n_in) if channel_std is None else channel_std.float())
        self.inp = nn.Conv1d(n_in, filters, 1)
        self.convs = nn.ModuleList(CausalConv1d(filters, filters, kernel_size, 2**i) for i in range(layers))
        self.out_dim = filters

    def forward(self, taps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weight = mask.to(taps.dtype).unsqueeze(1)
        standard = (taps - self.channel_mean[:, None]) / self.channel_std[:, None]
        h = self.inp(standard * weight)
        for conv in self.convs:
            h = h + torch.relu(conv(h))
        pooled = (h * weight).sum(-1) / weight.sum(-1).clamp_min(1.0)
        return torch.relu(pooled)


class ConvFeatures(nn.Module):
    """Colored MNIST feature extractor: 2 conv 5×5, 64 filters, each with 2×2 max-pool; (n, 3, 28, 28) -> (n, 1024)."""

    def __init__(self, n_in: int = 3, filters: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, filters, 5)
        self.conv2 = nn.Conv2d(filters, filters, 5)
        self.out_dim = filters * 4 * 4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = nnf.max_pool2d(torch.relu(self.conv1(images)), 2)
        h = nnf.max_pool2d(torch.relu(self.conv2(h)), 2)
        return h.flatten(1)


class DenseFeatures(nn.Module):
    """Tabular feature extractor (Adult, your own table): one linear layer with ReLU, (n, n_in) -> (n, out_dim)."""

    def __init__(self, n_in: int, out_dim: int) -> None:
        super().__init__()
        self.net = mlp((n_in, out_dim), last_relu=True)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BiasHeads(nn.Module):
    """One predictor per bias attribute; forward(h (n, d)) -> list of logits (n, classes_k)."""

    def __init__(self, hidden: Sequence[int], bias_classes: Sequence[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(mlp((*hidden, k)) for k in bias_classes)

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        return [head(h) for head in self.heads]


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of one row of DESIGN §3's table. ``branch``: D_y and D_b; ``target``/``bias``: hidden sizes of P_y /
    P_b before the output layer (input first); ``estimator``: heads of M (input first)."""

    branch: int
    target: tuple[int, ...]
    bias: tuple[int, ...]
    estimator: tuple[int, ...]


def masked_channel_stats(taps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (floored at 1e-3) over the valid taps of ``taps (n, C, T)``."""
    weight = mask.to(torch.float64).unsqueeze(1)
    count = weight.sum().clamp_min(1.0)
    mean = (taps.double() * weight).sum((0, 2)) / count
    var = ((taps.double() - mean[:, None]).square() * weight).sum((0, 2)) / count
    return mean.float(), var.sqrt().clamp_min(1e-3).float()


def tap_features(train_inputs: Sequence[torch.Tensor], resnet_weights: str | None = None) -> TCN:
    """mPower's F: a :class:`TCN` on ``(taps (n, C, T), mask (n, T))``, input-standardised with the train taps."""
    mean, std = masked_channel_stats(*train_inputs)
    return TCN(train_inputs[0].shape[1], channel_mean=mean, channel_std=std)


def dense_features(train_inputs: Sequence[torch.Tensor], resnet_weights: str | None = None) -> DenseFeatures:
    """A table's F (Adult, your own csv): one 64-unit layer on ``x (n, d)``."""
    return DenseFeatures(train_inputs[0].shape[1], 64)


def resnet_features(train_inputs: Sequence[torch.Tensor], resnet_weights: str | None = None, *,
                    freeze_bn_when_pretrained: bool = False) -> nn.Module:
    """CelebA's and IMDB's F: the project's ResNet-18 with fc 512→256, from ``resnet_weights`` (a local
    torchvision-format ImageNet state dict) when given; ``freeze_bn_when_pretrained``: keep BatchNorm frozen when
    pretrained (IMDB, as the paper does)."""
    return resnet18(256, weights=resnet_weights, final_relu=True,
                    freeze_bn=freeze_bn_when_pretrained and resnet_weights is not None)


def feature_extractor(dataset: str, train_inputs: Sequence[torch.Tensor], *,
                      resnet_weights: str | None = None) -> nn.Module:
    """F for ``dataset`` (its spec's ``features``), sized from the training split's inputs."""
    return dataset_spec(dataset).features(train_inputs, resnet_weights)


def dataset_spec(dataset: str) -> DatasetSpec:
    """The registered spec of ``dataset`` (ValueError naming the known ones otherwise)."""
    from .data.registry import DATASETS  # the registry's dataset modules import the builders above

    if dataset not in DATASETS:
        raise ValueError(f"no model for dataset {dataset!r}; known: {sorted(DATASETS)}")
    return DATASETS[dataset]


class BranchedNet(nn.Module):
    """F, the target branch (D_y, P_y) and the bias branch (D_b, P_b) of CSAD (Fig. 2 of the paper), from given
    modules: your own, or the project's (:class:`DebiasNet`).

    ``features(*inputs) -> z (n, d_z)``; ``target_branch(z) -> h^y (n, d_y)``; ``target_logits(h^y) -> (n,)`` for
    two classes (``p_y`` has one output), else ``(n, classes)``; ``bias_branch(z) -> h^b (n, d_b)``;
    ``bias_logits(h^b) -> [(n, classes_k)]``, one per bias head (``p_b`` may return one tensor for one head).
    ``estimator_sizes``: layer sizes of the estimator's heads My and Mb, input (d_y, d_b) first.
    """

    def __init__(self, f: nn.Module, d_y: nn.Module, p_y: nn.Module, d_b: nn.Module, p_b: nn.Module, *,
                 n_classes: int, estimator_sizes: tuple[Sequence[int], Sequence[int]]) -> None:
        super().__init__()
        self.f, self.d_y, self.p_y, self.d_b, self.p_b = f, d_y, p_y, d_b, p_b
        self.n_classes = n_classes
        self.estimator_sizes = (tuple(estimator_sizes[0]), tuple(estimator_sizes[1]))

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.f(*inputs)

    def target_branch(self, z: torch.Tensor) -> torch.Tensor:
        return self.d_y(z)

    def target_logits(self, hy: torch.Tensor) -> torch.Tensor:
        logits = self.p_y(hy)
        return logits.squeeze(-1) if self.n_classes == 2 else logits

    def bias_branch(self, z: torch.Tensor) -> torch.Tensor:
        return self.d_b(z)

    def bias_logits(self, hb: torch.Tensor) -> list[torch.Tensor]:
        logits = self.p_b(hb)
        return [logits] if isinstance(logits, torch.Tensor) else list(logits)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Target logits: what is kept at test time (the bias branch and M are dropped)."""
        return self.target_logits(self.target_branch(self.features(*inputs)))


class DebiasNet(BranchedNet):
    """The project's :class:`BranchedNet` for a benchmark: F for ``dataset`` (:func:`feature_extractor`), branches
    and predictors sized by its spec's ``model`` (:data:`python.data.registry.DATASETS`)."""

    def __init__(self, dataset: str, train_inputs: Sequence[torch.Tensor], n_classes: int,
                 bias_classes: Sequence[int], *, resnet_weights: str | None = None) -> None:
        spec = dataset_spec(dataset).model
        f = feature_extractor(dataset, train_inputs, resnet_weights=resnet_weights)
        super().__init__(f, mlp((f.out_dim, spec.branch), last_relu=True),
                         mlp((*spec.target, 1 if n_classes == 2 else n_classes)),
                         mlp((f.out_dim, spec.branch), last_relu=True), BiasHeads(spec.bias, bias_classes),
                         n_classes=n_classes, estimator_sizes=(spec.estimator, spec.estimator))
        self.spec = spec
