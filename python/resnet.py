"""The project's own ResNet-18 (He et al. 2016), laid out like torchvision's ``resnet18`` (no torchvision needed).

Module, parameter and buffer names are torchvision's (``conv1.weight``, ``bn1.running_mean``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ..., ``fc.weight``), so a torchvision-format state dict
file (e.g. torchvision's ImageNet ``resnet18-f37072fd.pth``) loads with ``load_state_dict(strict=True)``.
:func:`resnet18` builds the feature extractor F of DESIGN §3 for CelebA and IMDB: the ImageNet backbone with the
1000-way ``fc`` replaced by ``Linear(512, num_outputs)`` (``fc 512 -> 256``).

Input: ``(n, 3, H, W)`` float images, normalised with the ImageNet mean/std when ImageNet weights are used; any
``H, W`` works (the global average pool removes the spatial size; below 32 px the last stages run at 1 x 1).
224 is ImageNet's size; 64 costs 12x less.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

LAYERS = (2, 2, 2, 2)  # BasicBlocks per stage of ResNet-18
WIDTHS = (64, 128, 256, 512)
FEATURE_DIM = 512  # pooled features, fc's input
_SHOWN = 5  # keys listed in an error message


def _conv3x3(n_in: int, n_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and a residual connection (torchvision's ``BasicBlock``).

    forward(x (n, n_in, H, W)) -> (n, n_out, H / stride, W / stride); ``downsample`` (1×1 conv + BN) projects the
    shortcut when the stride or width changes.
    """

    def __init__(self, n_in: int, n_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(n_in, n_out, stride)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(n_out, n_out)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or n_in != n_out:
            self.downsample = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        h = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(h)) + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's names. forward(images (n, 3, H, W)) -> (n, out_dim).

    num_outputs: size of ``fc`` (``Linear(512, num_outputs)``); None: no fc (``nn.Identity``), the output is the
    512 pooled features. freeze_bn: every BatchNorm stays in eval mode (running statistics used, never updated)
    and its affine weight/bias are frozen (``requires_grad=False``), even after ``train()``. final_relu: a ReLU
    after fc (parameter-free, so the state dict keys are unchanged). ``out_dim``: the output width.
    """

    def __init__(self, num_outputs: int | None = 1000, *, freeze_bn: bool = False, final_relu: bool = False) -> None:
        super().__init__()
        if num_outputs is not None and (isinstance(num_outputs, bool) or not isinstance(num_outputs, int)
                                        or num_outputs < 1):
            raise ValueError(f"num_outputs must be a positive int or None, got {num_outputs!r}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        n_in = 64
        for i, (blocks, width) in enumerate(zip(LAYERS, WIDTHS, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(n_in, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            n_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Identity() if num_outputs is None else nn.Linear(FEATURE_DIM, num_outputs)
        self.out_relu: nn.Module = nn.ReLU() if final_relu else nn.Identity()
        self.out_dim = FEATURE_DIM if num_outputs is None else num_outputs
        self.freeze_bn = freeze_bn
        self._init_weights()
        if freeze_bn:
            self._freeze_bn_params()

    def _init_weights(self) -> None:
        """torchvision's initialisation: Kaiming-normal (fan_out) convolutions, BN weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def batchnorms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]

    def _freeze_bn_params(self) -> None:
        for bn in self.batchnorms():
            bn.weight.requires_grad_(False)
            bn.bias.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> ResNet18:
        """Sets train/eval mode like ``nn.Module.train``, but with ``freeze_bn`` the BatchNorms stay in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for bn in self.batchnorms():
                bn.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ResNet18 expects images (n, 3, H, W), got shape {tuple(images.shape)}")
        h = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.out_relu(self.fc(torch.flatten(self.avgpool(h), 1)))


# ----------------------------------------------------------------------------------------------------------------------
# Loading a torchvision-format state dict


def _keys(keys: list[str] | set[str]) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file (``torch.save`` of a dict of tensors), loaded with ``weights_only=True``.

    A dict wrapping it under ``"state_dict"`` or ``"model"`` is unwrapped, and a ``"module."`` prefix on every key
    (DataParallel/DDP) is removed. FileNotFoundError when ``path`` is missing; ValueError naming the file when it
    cannot be read or is not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ResNet-18 weights {path} not found: expected a torchvision-format state dict file, e.g. torchvision's "
            "ImageNet resnet18-f37072fd.pth (download it on a machine with network access)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: the file is not a loadable state dict
        raise ValueError(f"ResNet-18 weights {path}: cannot be loaded as a state dict ({type(e).__name__}: {e})") from e
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"ResNet-18 weights {path}: expected a dict of tensors (a state dict), got {type(state)}")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def _backbone_state(model: ResNet18, state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The non-fc entries of ``state`` checked against ``model``'s; BN ``num_batches_tracked`` may be absent (old
    torchvision files) and is then set to 0. ValueError naming the file and listing the offending keys."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    given = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing = {k for k in own.keys() - given.keys() if not k.endswith("num_batches_tracked")}
    unexpected = given.keys() - own.keys()
    if missing or unexpected:
        raise ValueError(
            f"ResNet-18 weights {path}: not a torchvision resnet18 state dict: {len(missing)} missing key(s) "
            f"[{_keys(missing)}], {len(unexpected)} unexpected key(s) [{_keys(unexpected)}]"
        )
    wrong = [f"{k} {tuple(given[k].shape)} (expected {tuple(own[k].shape)})"
             for k in own.keys() & given.keys() if given[k].shape != own[k].shape]
    if wrong:
        raise ValueError(f"ResNet-18 weights {path}: {len(wrong)} tensor(s) of the wrong shape: {_keys(wrong)}")
    for k in own.keys() - given.keys():
        given[k] = torch.zeros_like(own[k])
    return given


def load_torchvision_weights(model: ResNet18, path: str | Path) -> list[str]:
    """Loads a torchvision-format resnet18 state dict file into ``model`` (strict on every backbone key).

    The file's ``fc.weight``/``fc.bias`` are used only when their shapes match the model's fc (e.g. the 1000-way
    ImageNet classifier with ``num_outputs=1000``); otherwise they are dropped and the model keeps its freshly
    initialised fc. Returns log lines (also logged). Errors: see :func:`read_state_dict` and
    :func:`_backbone_state`.
    """
    path = Path(path)
    state = read_state_dict(path)
    merged = _backbone_state(model, state, path)
    own_fc = {k: v for k, v in model.state_dict().items() if k.startswith("fc.")}
    file_fc = {k: v for k, v in state.items() if k.startswith("fc.")}
    if file_fc and file_fc.keys() == own_fc.keys() and all(file_fc[k].shape == own_fc[k].shape for k in own_fc):
        merged.update(file_fc)
        note = f"kept the file's fc ({_fc_shape(file_fc)})"
    else:
        merged.update(own_fc)
        note = (f"dropped the file's fc ({_fc_shape(file_fc)}), new fc {_fc_shape(own_fc)}" if file_fc
                else f"the file has no fc, new fc {_fc_shape(own_fc)}")
    model.load_state_dict(merged, strict=True)
    log = [f"ResNet-18: loaded {len(merged) - len(own_fc)} backbone tensors from {path}; {note}"]
    for line in log:
        logger.info(line)
    return log


def _fc_shape(fc: dict[str, torch.Tensor]) -> str:
    weight = fc.get("fc.weight")
    return "none" if weight is None else f"{weight.shape[1]}->{weight.shape[0]}"


def resnet18(
    num_outputs: int | None = 256,
    *,
    weights: str | Path | None = None,
    freeze_bn: bool = False,
    final_relu: bool = False,
) -> ResNet18:
    """ResNet-18 with ``fc = Linear(512, num_outputs)`` (None: no fc, 512 outputs); ``out_dim`` gives the width.

    weights: a local torchvision-format state dict file (the ImageNet ``resnet18-*.pth``) loaded into the backbone;
    its 1000-way fc is dropped (logged) unless ``num_outputs == 1000``. None: random (torchvision) initialisation.
    freeze_bn: BatchNorms kept in eval mode with frozen affine parameters (the paper does this on IMDB); meant
    for pretrained weights. final_relu: ReLU after fc.
    forward(images (n, 3, H, W)) -> (n, out_dim).
    """
    model = ResNet18(num_outputs, freeze_bn=freeze_bn, final_relu=final_relu)
    if weights is not None:
        load_torchvision_weights(model, weights)
    elif freeze_bn:
        logger.warning("ResNet-18: freeze_bn without pretrained weights keeps BatchNorm at its initial statistics "
                       "(mean 0, var 1): the network is then trained without normalisation")
    return model
