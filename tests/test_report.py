"""``clipbench report``: tables are a pure function of the stored result JSONs."""

from __future__ import annotations

import json

import pandas as pd

from clipbench.report import load_results, long_form, pivot


def fake_result(attack: str, defense: str, seed: int, asr: float, status: str = "ok") -> dict:
    metric = lambda v: {"value": v, "successes": int(v * 100), "total": 100, "ci95": [max(0, v - 0.1), min(1, v + 0.1)], "definition": "x"}
    return {
        "schema_version": 1, "status": status, "error": None if status == "ok" else "boom",
        "cell": {"preset": "micro", "model": "m", "attack": attack, "defense": defense, "seed": seed,
                 "name": f"{attack}__{defense}__{seed}"},
        "metrics": {"ca_top1": metric(0.8), "asr": metric(asr), "asr_all": metric(asr), "ra": metric(1 - asr)} if status == "ok" else {},
        "stages": {"defense": {"wall_s": 1.0, "peak_rss_mib": 10.0, "build": {"wall_s": 2.0, "peak_rss_mib": 20.0}}},
        "provenance": {"defense": "official method"},
        "config": {"overrides": {}, "pretrained": None},
    }


def test_pivot_is_mean_and_std_over_seeds(tmp_path):
    for seed, asr in ((0, 0.5), (1, 0.7)):
        (tmp_path / f"a{seed}.json").write_text(json.dumps(fake_result("badnet", "none", seed, asr)))
    frame = long_form(load_results(tmp_path))
    table = pivot(frame, "asr")
    assert table.loc["badnet", "none"] == "60.0 ± 14.1 (n=2)"
    assert set(frame["defense_wall_s"]) == {2.0}, "the cost of the run that built the defense is reported"


def test_corrupt_and_foreign_files_are_skipped_with_a_warning(tmp_path, recwarn):
    (tmp_path / "good.json").write_text(json.dumps(fake_result("sig", "finetune", 0, 0.9)))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": "world"}))
    results = load_results(tmp_path)
    assert [r["cell"]["attack"] for r in results] == ["sig"]
    messages = " ".join(str(w.message) for w in recwarn)
    assert "broken.json" in messages and "foreign.json" in messages


def test_failed_cells_are_kept_but_not_averaged(tmp_path):
    (tmp_path / "ok.json").write_text(json.dumps(fake_result("badnet", "none", 0, 1.0)))
    (tmp_path / "bad.json").write_text(json.dumps(fake_result("badnet", "none", 1, 0.0, status="failed")))
    frame = long_form(load_results(tmp_path))
    assert (frame["status"] == "failed").sum() == 1
    assert pivot(frame, "asr").loc["badnet", "none"] == "100.0 (n=1)", "one seed: no spread shown"


def test_report_command_writes_tables(cli_runner, tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(fake_result("blended", "finetune", 0, 0.25)))
    done = cli_runner(["report", "--results-dir", tmp_path, "--out", tmp_path / "out"])
    assert done.exit_code == 0, done.output
    markdown = (tmp_path / "out" / "pivot_asr.md").read_text()
    assert "blended" in markdown and "25.0" in markdown
    assert pd.read_csv(tmp_path / "out" / "results_long.csv").shape[0] == 4


def test_report_of_a_folder_without_results_is_one_line_and_writes_nothing(cli_subprocess, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli_subprocess(["report", "--results-dir", empty, "--out", tmp_path / "out"])
    assert done.returncode == 2 and done.stderr.strip().endswith("holds no readable clipbench result; nothing written")
    (empty / "broken.json").write_text("{not json")
    done = cli_subprocess(["report", "--results-dir", empty, "--out", tmp_path / "out"])
    assert done.returncode == 2 and "skipping" in done.stderr and "broken.json" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_bare_clipbench_prints_help_and_exits_zero(cli_subprocess):
    done = cli_subprocess([])
    assert done.returncode == 0 and "Usage: " in done.stdout and "Examples:" in done.stdout and "run " in done.stdout


def test_failed_and_missing_cells_are_listed_in_the_report_and_on_the_page(cli_runner, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    cells = [fake_result("badnet", "none", 0, 0.9), fake_result("badnet", "none", 1, 0.8),
             fake_result("badnet", "finetune", 0, 0.3), fake_result("blended", "none", 0, 0.0, status="failed")]
    for i, cell in enumerate(cells):
        (results / f"{i}.json").write_text(json.dumps(cell))
    (results / "corrupt.json").write_text("{")
    done = cli_runner(["report", "--results-dir", results, "--out", tmp_path / "out"])
    assert done.exit_code == 0, done.output
    listed = (tmp_path / "out" / "incomplete_cells.md").read_text()
    assert "boom" in listed, "a failed cell is listed with its error"
    missing = [line for line in listed.splitlines() if "missing" in line]
    assert len(missing) == 4, listed  # 2 attacks x 2 defenses x 2 seeds, 4 present
    assert ["blended", "finetune", "1", "missing"] in [[c.strip() for c in line.split("|")[1:5]] for line in missing]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Failed or missing cells (5)" in page and "boom" in page


def test_an_unchanged_folder_rebuilds_to_identical_tables_and_page(cli_runner, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for seed in (0, 1):
        (results / f"{seed}.json").write_text(json.dumps(fake_result("badnet", "none", seed, 0.5 + seed / 10)))
    builds = []
    for name in ("a", "b"):
        assert cli_runner(["report", "--results-dir", results, "--out", tmp_path / name]).exit_code == 0
        builds.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir() if p.name != "generated.json"})
    assert builds[0] == builds[1]
    assert "generated_utc" in json.loads((tmp_path / "a" / "generated.json").read_text())
