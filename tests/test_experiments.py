"""``python -m python.experiments``: quick grids end to end, tables and plots, reuse of finished runs."""

from __future__ import annotations

import dataclasses

import pytest

from python import experiments


def test_mpower_experiment_writes_a_table_beside_the_paper_and_a_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the simulated cohort is cached under ./data_cache
    out = experiments.main(["mpower", "--quick", "--seeds", "1", "--out", str(tmp_path / "exp")])
    table = (out / "table.md").read_text()
    for method in ("baseline", "grad_reverse", "csad"):
        assert f"| {method} |" in table and f"| {method} (paper) |" in table
    assert "0.772" in table  # the paper's CSAD AUC on mPower
    assert (out / "plot.png").stat().st_size > 1000
    runs = sorted(p.name for p in (out / "runs").iterdir() if p.is_dir())  # beside them: each run's lock file
    assert runs == ["baseline_seed0", "csad_seed0", "grad_reverse_seed0"]
    before = (out / "runs" / "csad_seed0" / "metrics.json").stat().st_mtime_ns
    experiments.main(["mpower", "--quick", "--seeds", "1", "--out", str(tmp_path / "exp")])
    assert (out / "runs" / "csad_seed0" / "metrics.json").stat().st_mtime_ns == before  # reused, not retrained


def test_mpower_paper_row_puts_each_number_under_its_own_metric():
    """Table 4 has AUC, AP and F1 but no within-bin AUC: the paper's AP must not land in the within-bin column,
    and a conditional cell (a setting the paper did not run) gets no paper row."""
    exp = experiments.EXPERIMENTS["mpower"]
    run = {"metrics": {"test": dict.fromkeys(("auc", "within_bin_auc", "ap", "f1"), 0.5)},
           "bias_leakage": {"age": {"features": {"balanced_accuracy": 0.3}}}}
    cells = {experiments.Cell("baseline", ""): [run], experiments.Cell("csad", "conditional"): [run]}
    table = experiments.by_method_table(cells, exp, experiments.mpower_paper_row)
    rows = [r for r in table.splitlines() if "(paper)" in r]
    assert len(rows) == 1
    columns = [c.strip() for c in rows[0].strip("|").split("|")]
    assert dict(zip(("method", "setting", "seeds", *exp.metrics), columns, strict=True)) == {
        "method": "baseline (paper)", "setting": "", "seeds": "", "auc": "0.735", "within_bin_auc": "",
        "ap": "0.419", "f1": "0.553", "age_leakage": ""}


@pytest.mark.parametrize(("name", "cell", "paper"), [
    ("adult", ("csad", "gender+race"), {"balanced_accuracy": "0.804", "s_con": "0.938", "gap_max_race": "0.058"}),
    ("adult_lambda", ("csad", "20"), {"balanced_accuracy": "0.789", "gap_rms_race": "0.035", "gap_max_race": "0.050"}),
])
def test_adult_paper_rows_put_each_number_under_its_metric(name, cell, paper):
    """Tables 5 and 6 print balanced accuracy in %: ours is a fraction, so the paper's row must be one too."""
    exp = experiments.EXPERIMENTS[name]
    run = {"metrics": {"test": dict.fromkeys(exp.metrics, 0.5)}}
    table = exp.table({experiments.Cell(*cell): [run]}, exp)
    row = next(r for r in table.splitlines() if "(paper)" in r)
    columns = dict(zip(("method", "setting", "seeds", *exp.metrics), (c.strip() for c in row.strip("|").split("|")),
                       strict=True))
    assert columns["setting"] == cell[1] and paper.items() <= columns.items()


def _auc_run(auc: float) -> dict:
    return {"metrics": {"test": {"auc": auc}}}


def test_oracle_gap_judges_each_age_invariant_reference_against_the_baseline_spread():
    """The reweighted oracle and the unconfounded training draw are each compared with the baseline: the gap must be
    ≥ 0.05 and ≥ 3 sd of the baseline's seeds; a debiasing method's runs play no part."""
    base = [_auc_run(a) for a in (0.70, 0.71, 0.72)]  # sd 0.01
    cells = {experiments.Cell("baseline", ""): base,
             experiments.Cell("oracle", ""): [_auc_run(0.74)],  # +0.030: fails the 0.05 floor
             experiments.UNCONFOUNDED_DRAW: [_auc_run(0.77)],  # +0.060 ≥ 0.05 and ≥ 0.030: holds
             experiments.Cell("csad", ""): [_auc_run(0.99)]}
    lines = experiments.oracle_gap(cells).splitlines()
    assert len(lines) == 2
    assert "reweighted" in lines[0] and "+0.030" in lines[0] and lines[0].endswith("FAILS.")
    assert "unconfounded" in lines[1] and "+0.060" in lines[1] and lines[1].endswith("holds.")
    noisy = [_auc_run(a) for a in (0.66, 0.71, 0.76)]  # sd 0.05: a +0.06 gap is under 3 sd
    assert experiments.oracle_gap({experiments.Cell("baseline", ""): noisy,
                                   experiments.UNCONFOUNDED_DRAW: [_auc_run(0.77)]}).endswith("FAILS.")
    assert experiments.oracle_gap({experiments.Cell("baseline", ""): base}) == ""


def test_data_cost_compares_each_reduced_draw_with_the_full_draw_and_the_oracle(tmp_path):
    exp = experiments.EXPERIMENTS["mpower_data_cost"]
    runs = {experiments.Cell("baseline", ""): [_auc_run(a) for a in (0.69, 0.70, 0.71)],
            experiments.Cell("oracle", ""): [_auc_run(a) for a in (0.72, 0.74)],
            experiments.UNCONFOUNDED_DRAW: [_auc_run(a) for a in (0.75, 0.77)],
            experiments.data_cost_cell("0.75"): [_auc_run(a) for a in (0.73, 0.75)],
            experiments.data_cost_cell("0.54"): [_auc_run(a) for a in (0.71, 0.73)]}
    lines = experiments.data_cost(runs).splitlines()
    assert lines == ["Draw with 0.54 of its subjects: test AUC 0.720; +0.040 for the other subjects; "
                     "the reweighted oracle +0.010 against it.",
                     "Draw with 0.75 of its subjects: test AUC 0.740; +0.020 for the other subjects; "
                     "the reweighted oracle -0.010 against it."]
    assert experiments.subject_share(experiments.Cell("oracle", "")) is None
    for run in (r for cell_runs in runs.values() for r in cell_runs):
        run["metrics"]["test"].update(within_bin_auc=0.7, ap=0.7, f1=0.6)
    table = exp.table(runs, exp)
    assert "| baseline | unconfounded-draw-0.54 | 2 |" in table and "Oracle gap" in table and lines[0] in table
    exp.plot(runs, exp, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_adult_lambda_experiment_plots_the_tradeoff(tmp_path):
    out = experiments.main(["adult_lambda", "--quick", "--seeds", "1", "--out", str(tmp_path / "exp")])
    table = (out / "table.md").read_text()
    assert "| csad | 1 |" in table and "| csad | 40 |" in table and "gap_rms_gender" in table
    assert (out / "plot.png").is_file()


def test_experiments_that_need_real_data_say_so(tmp_path):
    with pytest.raises(SystemExit, match="needs the real data"):
        experiments.main(["celeba", "--quick", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--seeds must be"):
        experiments.seeds_of("three")


def test_methods_and_settings_select_part_of_the_grid():
    cells = experiments.EXPERIMENTS["colored_mnist_sigma"].cells
    chosen = experiments.selected_cells(cells, "baseline,csad", "0.020,0.050")
    assert sorted((c.method, c.setting) for c in chosen) == [
        ("baseline", "0.020"), ("baseline", "0.050"), ("csad", "0.020"), ("csad", "0.050")]
    assert experiments.selected_cells(cells, None, None) == tuple(cells)
    with pytest.raises(ValueError, match=r"--settings: 0\.02 not in this grid"):
        experiments.selected_cells(cells, None, "0.02")
    with pytest.raises(ValueError, match="--methods: vanilla"):
        experiments.selected_cells(cells, "vanilla", None)


def test_train_args_reach_every_run_and_may_not_override_the_grid(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(experiments, "run_cell", lambda exp, cell, seed, folder, common: seen.append(common) or {})
    stub = dataclasses.replace(experiments.EXPERIMENTS["adult"], table=lambda r, e: "", plot=lambda r, e, p: None)
    monkeypatch.setitem(experiments.EXPERIMENTS, "adult", stub)
    experiments.main(["adult", "--seeds", "1", "--methods", "csad", "--train-args", "--lambda 2 --k-inner 3",
                      "--out", str(tmp_path)])
    assert seen and seen[0]["lambda_"] == 2.0 and seen[0]["k_inner"] == 3
    with pytest.raises(ValueError, match="--lambda, which this grid varies"):
        experiments.main(["adult_lambda", "--train-args", "--lambda 2", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--resume and --overwrite are not settings of a run"):
        experiments.main(["adult", "--train-args=--overwrite", "--out", str(tmp_path)])


def test_a_finished_run_with_other_settings_is_not_reused(tmp_path):
    out = tmp_path / "exp"
    experiments.main(["adult", "--quick", "--seeds", "1", "--methods", "baseline", "--out", str(out)])
    experiments.main(["adult", "--quick", "--seeds", "1", "--methods", "baseline", "--out", str(out),
                      "--device", "cpu"])  # device may differ: reused
    with pytest.raises(ValueError, match=r"other settings \(lr: saved 0\.001, asked 0\.01\)"):
        experiments.main(["adult", "--quick", "--seeds", "1", "--methods", "baseline", "--out", str(out),
                          "--train-args", "--lr 0.01"])


def test_markdown_table_rules_and_rows():
    from python.tables import markdown_table

    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n| --- | --- |\n| 1 | 2 |"
    assert markdown_table(["n", "x"], [], ["---:", "---"]) == "| n | x |\n|---:|---|"
    with pytest.raises(ValueError, match="1 rule cells for 2 columns"):
        markdown_table(["a", "b"], [], ["---"])
