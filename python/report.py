"""What a run leaves behind: metrics.json, curves.png and the console table beside the baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from python.checkpoint import write_atomic
from python.trainer import RunResult

ORACLE_NOTE = ("oracle: a reference ceiling, not a debiasing method (the baseline trained on the bias-balanced "
               "resample of the training split, using the bias labels)")
FIRST = ("auc", "within_bin_auc", "ap", "f1", "accuracy", "balanced_accuracy")


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    text = json.dumps(data, indent=2, allow_nan=True) + "\n"
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def metric_rows(result: RunResult, bias_free: bool) -> list[tuple[str, str, str]]:
    """(split, key, label) of every metric of ``result``: the target's first, then the dataset's own."""
    suffix = {"val": " (bias-aligned)" if bias_free else "", "test": " (bias-free)" if bias_free else ""}
    rows = []
    for split in ("val", "test"):
        keys = result.metrics[split]
        ordered = [k for k in FIRST if k in keys] + [k for k in keys if k not in FIRST]
        if split == "val":
            ordered = ordered[:1]
        rows += [(split, key, f"{split} {key}{suffix[split] if i == 0 else ''}") for i, key in enumerate(ordered)]
    return rows


def table(result: RunResult, baseline: RunResult | None, bias_names: tuple[str, ...], bias_free: bool) -> str:
    """A plain-text table: one row per metric, columns baseline, method and their difference."""
    rows: list[tuple[str, float, float | None]] = []
    for split, key, label in metric_rows(result, bias_free):
        rows.append((label, result.metrics[split][key], baseline.metrics[split][key] if baseline else None))
    for name in bias_names:
        for kind in ("features", "target_features"):
            probe = result.bias_leakage[name][kind]
            base = baseline.bias_leakage[name][kind]["balanced_accuracy"] if baseline else None
            rows.append((f"{name} leakage, {kind} (bal. acc.; chance {probe['chance_balanced_accuracy']:.3f})",
                         probe["balanced_accuracy"], base))
    width = max(len(r[0]) for r in rows)
    head = f"{'metric':<{width}}  {'baseline':>9}  {result.method:>12}  {'change':>8}"
    lines = [head, "-" * len(head)]
    for label, value, base in rows:
        base_text = f"{base:9.4f}" if base is not None else f"{'-':>9}"
        change = f"{value - base:+8.4f}" if base is not None and math.isfinite(base) else f"{'':>8}"
        lines.append(f"{label:<{width}}  {base_text}  {value:12.4f}  {change}")
    if result.method == "oracle":
        lines.append(ORACLE_NOTE)
    return "\n".join(lines)


def plot_curves(results: list[RunResult], primary: str, path: Path) -> None:
    """curves.png: per method, each training loss and the validation metric over epochs (phases shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    loss_ax, val_ax = axes
    for result in results:
        if not result.history:
            continue
        x = list(range(1, len(result.history) + 1))
        keys = sorted({k for h in result.history for k in h if k not in ("phase", "epoch", f"val_{primary}")})
        for key in keys:
            points = [(i, h[key]) for i, h in zip(x, result.history, strict=True) if key in h]
            loss_ax.plot(*zip(*points, strict=True), marker=".", label=f"{result.method}: {key}")
        val_ax.plot(x, [h[f"val_{primary}"] for h in result.history], marker=".", label=result.method)
        _mark_phases(val_ax, result.history)
    loss_ax.set(xlabel="epoch (all phases)", ylabel="mean loss / estimate per epoch", title="training")
    val_ax.set(xlabel="epoch (all phases)", ylabel=f"validation {primary}", title="validation")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mark_phases(ax: Any, history: list[dict[str, Any]]) -> None:
    for i in range(1, len(history)):
        if history[i]["phase"] != history[i - 1]["phase"]:
            ax.axvline(i + 0.5, color="grey", lw=0.6, ls=":")
