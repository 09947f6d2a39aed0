"""What a run leaves behind: metrics.json, history.csv, curves.png and the console table beside the baseline."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from .checkpoint import write_atomic
from .trainer import RunResult

ORACLE_NOTE = ("oracle: a reference ceiling, not a debiasing method (the baseline trained on the bias-balanced "
               "training distribution by a weighted loss, using the bias labels)")
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


def history_columns(results: list[RunResult], primary: str) -> list[str]:
    """Columns of history.csv: method, phase, epoch, every loss any method logged (in the order first logged), then
    the validation metric ``val_<primary>``."""
    val_key = f"val_{primary}"
    losses = dict.fromkeys(k for r in results for h in r.history for k in h if k not in ("phase", "epoch", val_key))
    return ["method", "phase", "epoch", *losses, val_key]


def write_history_csv(results: list[RunResult], primary: str, path: Path) -> None:
    """history.csv: one row per method and epoch (``epoch`` counts from 1 within its phase), the epoch's mean of every
    loss the method logged in that phase (empty where it logged none) and the validation metric after the epoch."""
    columns = history_columns(results, primary)
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    for result in results:
        for h in result.history:
            writer.writerow({"method": result.method, **h})
    text = out.getvalue()
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def phase_spans(history: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(phase, first, last) epoch numbers over all phases (1-based, inclusive) of each run of one phase."""
    spans: list[tuple[str, int, int]] = []
    for x, h in enumerate(history, 1):
        if spans and spans[-1][0] == h["phase"]:
            spans[-1] = (h["phase"], spans[-1][1], x)
        else:
            spans.append((h["phase"], x, x))
    return spans


def plot_curves(results: list[RunResult], primary: str, path: Path) -> None:
    """curves.png: one row per method; its validation metric first (one scale for all rows), then one panel per
    loss, since losses differ in scale (a cross-entropy near 0.3, an MI estimate near -4). The background colour of
    each epoch is its phase (legend on top); a loss is drawn only over the phases that log it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    val_key = f"val_{primary}"
    rows = [(r, history_columns([r], primary)[3:-1]) for r in results if r.history]
    cols = 1 + max((len(keys) for _, keys in rows), default=0)
    fig, axes = plt.subplots(max(len(rows), 1), cols, figsize=(3.3 * cols + 0.4, 2.7 * max(len(rows), 1) + 0.7),
                             squeeze=False)
    colours: dict[str, Any] = {}
    val_values = [h[val_key] for r, _ in rows for h in r.history if math.isfinite(h[val_key])]
    for ax_row, (result, keys) in zip(axes, rows, strict=False):
        spans = phase_spans(result.history)
        for ax, key in zip(ax_row, [val_key, *keys], strict=False):
            for phase, first, last in spans:
                colour = colours.setdefault(phase, plt.get_cmap("Pastel1")(len(colours) % 9))
                ax.axvspan(first - 0.5, last + 0.5, color=colour, alpha=0.6, lw=0)
            # the validation metric is measured after every epoch: one line; a loss only within each phase logging it
            pieces = [(1, len(result.history))] if key == val_key else [(first, last) for _, first, last in spans]
            for first, last in pieces:
                points = [(x, result.history[x - 1][key]) for x in range(first, last + 1)
                          if key in result.history[x - 1]]
                if points:
                    ax.plot(*zip(*points, strict=True), marker=".", color="C0" if key == val_key else "C3")
            label = f"validation {primary}" if key == val_key else key
            ax.set_title(f"{result.method}: {label}", fontsize=9)
            ax.set_xlim(0.5, len(result.history) + 0.5)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if key == val_key and val_values:
                low, high = min(val_values), max(val_values)
                pad = 0.05 * (high - low) or 0.01
                ax.set_ylim(low - pad, high + pad)
        for ax in ax_row[1 + len(keys):]:
            ax.axis("off")
        ax_row[0].set_xlabel("epoch (all phases in order)", fontsize=8)
    if not rows:
        axes[0][0].text(0.5, 0.5, "no epochs trained", ha="center", va="center")
        axes[0][0].axis("off")
    handles = [Patch(color=c, alpha=0.6, label=phase) for phase, c in colours.items()]
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, title="phase",
                   title_fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
