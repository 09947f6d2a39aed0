"""`python -m benchmarks.report --merge`: rows of earlier commands are kept, and each command's commit and date
stay in the results (the header shows only the last one's)."""
from benchmarks import report, tables


def results(commit: str, date: str, rows: list[dict], e2e: list[dict]) -> dict:
    return {"commit": commit, "dirty": False, "date": date, "rows": rows, "e2e": e2e, "runtime_s": 10.0}


def row(workload: str, n: int, provider: str, median_s: float) -> dict:
    return {"workload": workload, "n": n, "provider": provider, "median_s": median_s}


def test_merge_keeps_rows_and_records_each_command():
    old = results("a" * 40, "2026-01-01", [row("w", 64, "cpu", 1.0), row("w", 128, "cpu", 2.0)], [{"b": "old"}])
    new = results("b" * 40, "2026-02-02", [row("w", 128, "cpu", 3.0)], [])
    merged = report._merge(old, new)
    assert sorted((r["n"], r["median_s"]) for r in merged["rows"]) == [(64, 1.0), (128, 3.0)]
    assert merged["e2e"] == [{"b": "old"}]
    assert [(p["commit"][0], p["rows"], p["e2e"]) for p in merged["parts"]] == [("a", 2, True), ("b", 1, False)]
    third = report._merge(merged, results("c" * 40, "2026-03-03", [], [{"b": "new"}]))
    assert [p["commit"][0] for p in third["parts"]] == ["a", "b", "c"]
    assert third["e2e"] == [{"b": "new"}]
    sentence = tables._parts_sentence(third["parts"])
    assert "Merged from 3 commands" in sentence
    assert "2 rows and the training step at commit `aaaaaaaaaaaa` on 2026-01-01" in sentence
    assert "1 row at commit `bbbbbbbbbbbb` on 2026-02-02" in sentence
    assert "the training step at commit `cccccccccccc` on 2026-03-03" in sentence


def test_render_only_skips_the_offline_triton_reports(tmp_path):
    """results/ also holds benchmarks.resources' and benchmarks.precision's JSON (no rows, no device type): the
    timing tables are regenerated from the timing reports alone (a KeyError on 'device_type' before)."""
    import json
    import shutil
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "benchmarks"
    for path in (here / "results").glob("*.json"):
        shutil.copy(path, tmp_path)
    timing = [p for p in tmp_path.glob("*.json") if "device_type" in json.loads(p.read_text())]
    assert timing and len(timing) < len(list(tmp_path.glob("*.json")))
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{tables.BEGIN}\n{tables.END}\ntail\n")
    tables.regenerate(tmp_path, readme)
    text = readme.read_text()
    for path in timing:
        machine = json.loads(path.read_text())["machine"]
        assert f"## `{machine}`" in text and (tmp_path / f"{machine}.md").exists()
    assert text.startswith("head\n") and text.endswith("tail\n")
