"""Summarise several runs as a markdown table: ``python -m python.summarize runs/FOLDER [runs/FOLDER ...]``.

Reads every ``metrics.json`` under the given folders, groups by method (the baseline trained beside a method
counts as a run of ``baseline``), and prints mean ± standard deviation over seeds of each metric.
Post-processing results (``python -m python.postprocess``, with ``before``/``after``) are grouped by their
folder's name without its ``_seedN`` suffix, one row before and one after.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from .tables import markdown_table

ORACLE_LABEL = "oracle (reference ceiling: trained on the bias-balanced training distribution)"
COLUMNS = (
    ("val AUC", ("metrics", "val", "auc")),
    ("test AUC", ("metrics", "test", "auc")),
    ("within-bin AUC", ("metrics", "test", "within_bin_auc")),  # mPower only: shown when every run has it
    ("test AP", ("metrics", "test", "ap")),
    ("test F1", ("metrics", "test", "f1")),
    ("test acc.", ("metrics", "test", "accuracy")),
)


def read_results(folders: Sequence[Path]) -> dict[Path, dict]:
    """Every metrics.json below ``folders``, parsed, in path order."""
    files = sorted(p for folder in folders for p in Path(folder).rglob("metrics.json"))
    if not files:
        raise FileNotFoundError(f"no metrics.json under {', '.join(map(str, folders))}")
    return {path: json.loads(path.read_text()) for path in files}


def collect(results: dict[Path, dict]) -> dict[str, dict[int, dict]]:
    """``{method: {seed: run}}`` from training runs' metrics (:func:`read_results`); a baseline seen twice must
    agree."""
    runs: dict[str, dict[int, dict]] = {}
    for path, data in results.items():
        entries = [(data["method"], data)]
        if data.get("baseline"):
            entries.append(("baseline", data["baseline"]))
        for method, run in entries:
            seen = runs.setdefault(method, {}).get(data["seed"])
            if seen is not None and seen["metrics"] != run["metrics"]:
                raise ValueError(f"{path}: two different {method} runs with seed {data['seed']} (other settings?): "
                                 "summarise runs of one configuration")
            runs[method][data["seed"]] = run
    return runs


def value(run: dict, keys: tuple[str, ...]) -> float:
    for key in keys:
        run = run[key]
    return float(run)


def _has(run: dict, keys: tuple[str, ...]) -> bool:
    for key in keys:
        if not isinstance(run, dict) or key not in run:
            return False
        run = run[key]
    return True


def leakage(run: dict) -> float:
    """Balanced accuracy of the bias probe on F's features, averaged over bias attributes."""
    probes = [kinds["features"]["balanced_accuracy"] for kinds in run["bias_leakage"].values()]
    return sum(probes) / len(probes)


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` of ``values`` to three decimals (the value alone for one)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(runs: dict[str, dict[int, dict]]) -> str:
    order = sorted(runs, key=lambda m: (m != "baseline", m))
    any_run = next(iter(runs[order[0]].values()))
    chance = [k["features"]["chance_balanced_accuracy"] for k in any_run["bias_leakage"].values()]
    leak = f"bias leakage (bal. acc., chance {sum(chance) / len(chance):.3f})"
    columns = [(c, keys) for c, keys in COLUMNS
               if all(_has(run, keys) for by_seed in runs.values() for run in by_seed.values())]
    head = ["method", "seeds", *(c for c, _ in columns), leak]
    rows = []
    for method in order:
        seeds = sorted(runs[method])
        row = [ORACLE_LABEL if method == "oracle" else method, ",".join(map(str, seeds))]
        row += [mean_sd([value(runs[method][s], keys) for s in seeds]) for _, keys in columns]
        row.append(mean_sd([leakage(runs[method][s]) for s in seeds]))
        rows.append(row)
    return markdown_table(head, rows)


def postprocess_table(results: dict[Path, dict]) -> str:
    """Before/after rows per group of post-processing results: downstream accuracy, AUC, and the bias probe's
    balanced accuracy per attribute (chance 1 / classes)."""
    groups: dict[str, list[dict]] = {}
    for path, data in results.items():
        groups.setdefault(re.sub(r"_seed\d+$", "", path.parent.name), []).append(data)
    names = list(next(iter(groups.values()))[0]["before"]["bias_leakage"])
    head = ["features", "seeds", "target acc.", "target AUC", *(f"{n} leakage (bal. acc.)" for n in names)]
    rows = []
    for group, results in groups.items():
        for when in ("before", "after"):
            parts = [r[when] for r in results]
            rows.append([f"{group} {when}", ",".join(str(r["seed"]) for r in results),
                         mean_sd([p["accuracy"] for p in parts]),
                         mean_sd([p["auc"] for p in parts]) if all("auc" in p for p in parts) else "",
                         *(mean_sd([p["bias_leakage"][n]["balanced_accuracy"] for p in parts]) for n in names)])
    return markdown_table(head, rows)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m python.summarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding run folders (searched recursively)")
    results = read_results(parser.parse_args(argv).folders)
    post = {path: data for path, data in results.items() if {"before", "after"} <= set(data)}
    if post and len(post) != len(results):
        raise ValueError("the folders mix training runs and post-processing results: summarise them separately")
    text = postprocess_table(post) if post else table(collect(results))
    print(text)
    return text


if __name__ == "__main__":
    main()
