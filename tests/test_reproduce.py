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


def _result(attack: str, defense: str, asr: float, ca: float, probe: float, status: str = "ok") -> dict:
    metric = lambda v: {"value": v}  # noqa: E731
    return {"cell": {"attack": attack, "defense": defense}, "status": status,
            "metrics": {"asr": metric(asr), "ca_top1": metric(ca), "linear_probe": metric(probe)}}


def test_roclip_claims_are_read_from_their_csv_beside_the_measured_means():
    from clipbench.reproduce_claims import published_claims

    roclip = REPRODUCTIONS.get("roclip")
    claims = published_claims()
    assert claims["source"].str.contains("arXiv").all() and set(claims["where"]) == {"abstract"}
    results = [_result("targeted", "none", 0.875, 0.80, 0.70), _result("targeted", "none", 1.0, 0.82, 0.72),
               _result("badnet", "none", 0.99, 0.84, 0.74), _result("targeted", "roclip", 0.25, 0.78, 0.80),
               _result("badnet", "roclip", 0.05, 0.76, 0.78), _result("badnet", "safeclip", 0.0, 0.0, 0.0, "failed")]
    table = roclip.compare(results)
    none, ro, safe = (table.iloc[i] for i in range(3))
    assert none["targeted_success"] == pytest.approx(93.75) and none["targeted_success_std"] == pytest.approx(8.8388, abs=1e-3)
    assert none["ca"] == pytest.approx(82.0) and none["linear_probe"] == pytest.approx(72.0)
    assert ro["linear_probe_vs_no_defense"] == pytest.approx(79.0 - 72.0) and ro["ca_vs_no_defense"] == pytest.approx(77.0 - 82.0)
    claimed = lambda metric, defense: float(claims[(claims["metric"] == metric) & (claims["defense"] == defense)]["value"].iloc[0])  # noqa: E731
    assert ro["targeted_success_claimed"] == claimed("targeted_success", "roclip")
    assert ro["backdoor_asr_claimed"] == claimed("backdoor_asr", "roclip")
    assert ro["linear_probe_gain_claimed"] == claimed("linear_probe_gain", "roclip")
    assert safe["cells"] == 0 and safe["failed"] == 1 and safe["targeted_success_claimed"] == claimed("targeted_success", "safeclip")
    shape = roclip.paper_shape(table)
    assert shape.iloc[1]["targeted success %"] == f"25.0 ({claimed('targeted_success', 'roclip'):.1f})"


def test_reproduce_roclip_on_micro_from_scratch_prints_and_writes_the_claims_table(cli_runner, fresh_cache_dir, tmp_path):
    done = cli_runner(["reproduce", "roclip", "--preset", "micro", "--set", "scenario.threat_model=pretrain",
                       "--set", "scenario.pretrain_size=0", "--set", "evaluation.linear_probe=true",
                       "--cache-dir", fresh_cache_dir, "--results-dir", tmp_path / "r", "--out", tmp_path / "t"])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(tmp_path / "t" / "table.csv")
    assert list(table["defense"]) == ["CLIP (none)", "roclip", "safeclip"] and (table["cells"] == 2).all()
    assert table["linear_probe"].between(0, 100).all() and table["targeted_success"].between(0, 100).all()
    assert "targeted success %" in done.output and "(93.8)" in done.output
    assert "## The claims" in (tmp_path / "t" / "table.md").read_text()
