"""CSAD on a model and data of your own: ``python examples/own_model.py`` (installed: the csad package; from the
repository root without installing: ``PYTHONPATH=. python examples/own_model.py``).

Synthetic biased data: a target y and a bias attribute b, both binary. Inputs x (n, 8): two noisy copies of y, two
cleaner copies of b (the shortcut) and four noise columns. In the training split y = b for 90% of the rows, so a
vanilla model learns b as a proxy of y; in the test split y and b are independent.

Two models with the same architecture (your feature extractor F and the heads the Debiaser builds) are trained on
the same DataLoader: the vanilla baseline (only the target phase, as long as CSAD trains the target) and CSAD
(``csad.Debiaser.fit``: Algorithm 2). The script prints, on the test split, the target accuracy and the bias leakage
of F's features z and of the target features h^y: the balanced accuracy of a cross-fitted logistic probe predicting
b (0.5 is chance), python.metrics.bias_leakage.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:  # the installed package
    from csad import Debiaser
    from csad.metrics import bias_leakage
except ImportError:  # from the repository root
    from python import Debiaser
    from python.metrics import bias_leakage


def biased_data(n: int, agreement: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x (n, 8)``, ``y (n,)``, ``bias (n,)``: y equals the bias for a share ``agreement`` of the rows (0.5:
    independent)."""
    gen = torch.Generator().manual_seed(seed)
    bias = torch.randint(0, 2, (n,), generator=gen)
    agree = torch.rand(n, generator=gen) < agreement
    y = torch.where(agree, bias, 1 - bias)
    noise = torch.randn(n, 8, generator=gen)
    signal = torch.stack([y, y, bias, bias], 1).float() * 2 - 1
    x = noise * torch.tensor([1.5, 1.5, 0.3, 0.3, 1, 1, 1, 1]) + torch.cat([signal, torch.zeros(n, 4)], 1)
    return x, y, bias


class MyFeatures(nn.Module):
    """Your own feature extractor: (n, 8) -> (n, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def report(name: str, debiaser: Debiaser, x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor) -> dict:
    """Test accuracy and bias leakage (balanced accuracy of the probe) of ``debiaser``'s model; printed."""
    out = debiaser.outputs(x)
    accuracy = float(((out["logits"] > 0).long().cpu() == y).double().mean())
    leak = {kind: bias_leakage(out[kind].cpu(), bias)["balanced_accuracy"] for kind in ("features", "target_features")}
    print(f"{name:9s} test accuracy {accuracy:.3f}   bias leakage (probe balanced accuracy, chance 0.5): "
          f"z {leak['features']:.3f}, h^y {leak['target_features']:.3f}")
    return {"accuracy": accuracy, "leakage_z": leak["features"], "leakage_hy": leak["target_features"]}


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=5, help="target pretraining and adversarial epochs each")
    p.add_argument("--lambda", dest="lambda_", type=float, default=10.0)
    p.add_argument("--k-inner", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    x, y, bias = biased_data(args.n_train, 0.9, args.seed)
    x_test, y_test, bias_test = biased_data(2000, 0.5, args.seed + 1)
    loader = DataLoader(TensorDataset(x, y, bias), batch_size=128, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    features = MyFeatures()
    vanilla = Debiaser(copy.deepcopy(features), feature_dim=32, n_classes=2, bias_classes=[2],
                       pretrain_epochs=2 * args.epochs, bias_epochs=0, estimator_epochs=0, epochs=0)
    vanilla.fit(loader)
    debiased = Debiaser(features, feature_dim=32, n_classes=2, bias_classes=[2], lambda_=args.lambda_,
                        k_inner=args.k_inner, pretrain_epochs=args.epochs, bias_epochs=1, estimator_epochs=1,
                        epochs=args.epochs)
    debiased.fit(loader)
    return {"vanilla": report("vanilla", vanilla, x_test, y_test, bias_test),
            "csad": report("csad", debiased, x_test, y_test, bias_test)}


if __name__ == "__main__":
    main()
