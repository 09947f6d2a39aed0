"""The before/after 2-D embedding plot (paper Figure 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

EMBED_POINTS = 1000


def embed(x: torch.Tensor, method: str, seed: int) -> np.ndarray:
    """2-D embedding ``(n, 2)`` of ``x (n, d)``: t-SNE (when scikit-learn is importable and asked) or PCA."""
    x = x.double()
    if method in ("auto", "tsne") and len(x) > 5:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            if method == "tsne":
                raise
        else:
            perplexity = min(30.0, (len(x) - 1) / 3)
            return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x.numpy())
    centred = x - x.mean(0)
    _, _, v = torch.pca_lowrank(centred, q=min(2, x.shape[1]), center=False)
    coords = (centred @ v).numpy()
    return coords if coords.shape[1] == 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def plot_embedding(before: torch.Tensor, after: torch.Tensor, bias: torch.Tensor, bias_name: str, path: Path,
                   method: str, seed: int) -> None:
    """Side-by-side 2-D embeddings of ``before``/``after (n, d)`` coloured by ``bias (n,)`` (paper Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = torch.randperm(len(before), generator=torch.Generator().manual_seed(seed))[:EMBED_POINTS]
    values = bias[keep]
    classes = values.unique().tolist()
    categorical = not values.is_floating_point() and len(classes) <= 12
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, x, title in ((axes[0], before, "before"), (axes[1], after, "after (DeepMinMax)")):
        xy = embed(x[keep], method, seed)
        if categorical:
            for i, c in enumerate(classes):
                at = (values == c).numpy()
                ax.scatter(xy[at, 0], xy[at, 1], s=6, alpha=0.7, color=plt.cm.tab10(i % 10), label=f"{bias_name} {c}")
        else:
            points = ax.scatter(xy[:, 0], xy[:, 1], c=values.numpy(), s=6, cmap="coolwarm", alpha=0.8)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    if categorical:
        axes[1].legend(fontsize=7, markerscale=2, loc="best")
    else:
        fig.colorbar(points, ax=axes, label=bias_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
