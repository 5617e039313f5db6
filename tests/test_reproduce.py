"""``clipbench reproduce``: paper tables regenerated from cells, beside the published numbers (data)."""

from __future__ import annotations

import pandas as pd
import pytest

from clipbench.registry import DEFENSES, REPRODUCTIONS
from clipbench.reproduce import PUBLISHED_CSV, _row_label, cell_requests, published_numbers


def test_every_published_abd_row_is_reachable_from_a_reproduction():
    published = published_numbers()
    abd = published[published["source"].str.startswith("ABD")]
    covered = {(r.published_table, attack, r.label) for name in REPRODUCTIONS.names()
               for r in REPRODUCTIONS.get(name).rows for attack in REPRODUCTIONS.get(name).attacks}
    missing = [(t, a, d) for t, a, d in zip(abd["table"], abd["attack"], abd["defense"]) if (t, a, d) not in covered]
    assert not missing
    for name in REPRODUCTIONS.names():
        for row in REPRODUCTIONS.get(name).rows:
            config = DEFENSES.get(row.defense).default_config()
            assert all(hasattr(config, key) for key in row.overrides), (name, row)


def test_cell_requests_merge_user_overrides_under_row_overrides():
    table2 = REPRODUCTIONS.get("abd-table2")
    requests = cell_requests(table2, "micro", [0, 1], None, None, {"defense": {"use_eda": "true", "epochs": "2"}})
    assert len(requests) == 2 * 3 * 4
    patch_only = [r for r in requests if r.defense == "abd" and r.overrides["defense"].get("use_eda") == "false"]
    assert len(patch_only) == 2 * 3 and all(r.overrides["defense"]["epochs"] == "2" for r in patch_only)
    result = {"cell": {"defense": "abd"}, "config": {"overrides": {"defense": {"use_patch": "false"}}}}
    assert _row_label(table2, result) == "abd[eda only]"
    assert _row_label(table2, {"cell": {"defense": "abd"}, "config": {"overrides": {}}}) == "abd"


def test_reproduce_table3_on_micro_prints_and_writes_side_by_side(cli_runner, fresh_cache_dir, tmp_path):
    done = cli_runner(["reproduce", "abd-table3", "--preset", "micro", "--cache-dir", fresh_cache_dir,
                       "--results-dir", tmp_path / "r", "--out", tmp_path / "t"])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(tmp_path / "t" / "table.csv")
    assert list(table["attack"]) == ["badnet", "badnet", "blended", "blended", "badclip", "badclip"]
    published = pd.read_csv(PUBLISHED_CSV)
    row = table[(table["attack"] == "blended") & (table["defense"] == "abd[plain UAP no backdoor loss]")].iloc[0]
    expected = published[(published["table"] == "Table III") & (published["attack"] == "blended")].iloc[0]
    assert row["asr_published"] == pytest.approx(expected["asr"])
    assert row["asr_diff"] == pytest.approx(row["asr_all_measured"] - expected["asr"])
    assert row["seeds"] == 1 and 0 <= row["ca_measured"] <= 100
    # the two rows are different cells: the ablation's result file carries its override
    assert len(list((tmp_path / "r").glob("micro__*__abd__seed0*.json"))) == 6
    assert f"({expected['asr']:.1f})" in done.output
    assert (tmp_path / "t" / "figure.png").stat().st_size > 0
    assert "measured (published)" in (tmp_path / "t" / "table.md").read_text()


def test_reproduce_unknown_table_is_one_line(cli_subprocess):
    done = cli_subprocess(["reproduce", "abd-table9"])
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "abd-table1" in done.stderr


def test_paper_abd_preset_needs_its_data(cli_subprocess, tmp_path):
    done = cli_subprocess(["run", "--preset", "paper-abd", "--dry-run"])
    assert done.returncode == 2
    assert "scenario.train_data is empty" in done.stderr and done.stderr.strip().count("\n") == 0
    done = cli_subprocess(["run", "--preset", "paper-abd", "--set", f"scenario.train_data={tmp_path / 'nope.csv'}",
                           "--set", f"scenario.eval_data={tmp_path}", "--dry-run"])
    assert done.returncode == 2 and "nope.csv does not exist" in done.stderr
