"""The pre-training threat model (every model from scratch on the poisoned split) and the linear
probe wired into evaluation: keys, starting weights, a micro run end to end, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from clipbench.cells import CellRequest, resolve_cell
from clipbench.config import to_dict
from clipbench.data.scenario import ScenarioConfig
from clipbench.evaluation_config import EvaluationConfig
from clipbench.plan import plan_cell

PRETRAIN = {"scenario": {"threat_model": "pretrain", "pretrain_size": "0"}}


def cell(attack: str = "badnet", defense: str = "none", seed: int = 0, overrides: dict | None = None):
    return resolve_cell(CellRequest("micro", attack, defense, seed, overrides=overrides or PRETRAIN))


def test_settings_added_later_leave_earlier_keys_alone():
    assert "threat_model" not in to_dict(ScenarioConfig()) and to_dict(EvaluationConfig()) == {}
    assert to_dict(ScenarioConfig(threat_model="pretrain", pretrain_size=0))["threat_model"] == "pretrain"
    assert to_dict(EvaluationConfig(linear_probe=True)) == {"linear_probe": True}
    plain = resolve_cell(CellRequest("micro", "badnet", "none", 0))
    assert "evaluation" not in plain.config_dict() and "evaluation" not in plan_cell(plain)["reference"].parts


def test_the_victim_and_training_time_defenses_start_from_scratch_and_post_training_ones_from_the_victim():
    victim = plan_cell(cell())["victim"]
    assert "clean" not in victim.parts["parents"] and victim.parts["parents"]["scratch"]["model"] == "clipbench-micro-vit"
    roclip = plan_cell(cell(defense="roclip"))["defense"]
    assert set(roclip.parts["parents"]) == {"scratch", "poison"}
    finetune = plan_cell(cell(defense="finetune"))
    assert finetune["defense"].parts["parents"] == {"victim": finetune["victim"].key}
    fine_tuning = plan_cell(resolve_cell(CellRequest("micro", "badnet", "none", 0)))["victim"]
    assert "clean" in fine_tuning.parts["parents"] and fine_tuning.key != victim.key


def test_victim_and_training_time_defense_share_their_random_start_per_seed():
    from clipbench.stages.clean import starting_model

    first = starting_model(cell(), None).model.state_dict()
    same = starting_model(cell(defense="roclip"), None).model.state_dict()
    other = starting_model(cell(seed=1), None).model.state_dict()
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_a_pretraining_micro_run_scores_targets_ca_and_a_cached_linear_probe(cli_runner, fresh_cache_dir, tmp_path):
    results = tmp_path / "results"
    args = ["run", "--preset", "micro", "--attack", "targeted", "--defense", "none,roclip", "--set", "scenario.threat_model=pretrain",
            "--set", "scenario.pretrain_size=0", "--set", "evaluation.linear_probe=true", "--cache-dir", fresh_cache_dir,
            "--results-dir", results]
    done = cli_runner(args)
    assert done.exit_code == 0, done.output
    assert "linear probe %" in done.output
    for path in sorted(results.glob("*.json")):
        result = json.loads(path.read_text())
        probe = result["metrics"]["linear_probe"]
        assert result["status"] == "ok" and probe["total"] == 200 - 16 == result["metrics"]["ca_top1"]["total"]
        assert 0.0 <= probe["value"] <= 1.0 and probe["strength"] > 0 and len(probe["validation_accuracy"]) == 13
        assert result["clean_model_metrics"]["linear_probe"]["model_sha256"] != probe["model_sha256"]
        assert result["config"]["evaluation"] == {"linear_probe": True}
        assert (fresh_cache_dir / "probe" / result["artifacts"]["probe"]).is_dir()  # named, so `cache gc` keeps it
    probes = list((fresh_cache_dir / "probe").iterdir())
    assert len([p for p in probes if not p.name.startswith(".")]) == 3  # clean model, victim, RoCLIP's model
    again = cli_runner(args)
    assert again.exit_code == 0 and len(list((fresh_cache_dir / "probe").iterdir())) == len(probes)


@pytest.mark.parametrize("extra, fragment", [
    ({"scenario": {"threat_model": "pretrain"}}, "scenario.pretrain_size must be 0 under threat_model=pretrain"),
    ({"scenario": {"threat_model": "pretrain", "pretrain_size": "0", "victim_size": "0"}},
     "scenario.victim_size is the pre-training data under threat_model=pretrain and must be > 0"),
    ({"scenario": {"threat_model": "scratch"}}, "scenario.threat_model 'scratch' is unknown; valid: finetune, pretrain"),
    ({"evaluation": {"probe_validation": "1"}}, "evaluation.probe_validation must be in (0, 1)"),
])
def test_bad_pretraining_and_probe_settings_are_one_clear_error(extra, fragment):
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        resolve_cell(CellRequest("micro", "badnet", "none", 0, overrides=extra))


@pytest.mark.parametrize("defense, fragment", [
    ("abd", "defense abd works against the model its victim was fine-tuned from"),
    ("filter-similarity", "detector similarity embeds with a clean model, which scenario.threat_model=pretrain has none of"),
])
def test_defenses_that_need_a_clean_model_are_refused_from_scratch(defense, fragment):
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match=fragment):
        cell(defense=defense)
    cell(defense="filter-kdistance")  # embeds with the defender's own poisoned model: fine


def test_detect_refuses_clean_embeddings_from_scratch_and_trigger_detectors_on_targeted_poisoning(cli_subprocess, tmp_path):
    args = ["detect", "--preset", "micro", "--cache-dir", tmp_path / "c", "--results-dir", tmp_path / "r"]
    done = cli_subprocess(args + ["--attack", "badnet", "--detector", "similarity", *sum((["--set", f"scenario.{k}={v}"]
                                                                                          for k, v in PRETRAIN["scenario"].items()), [])])
    assert done.returncode == 2 and "embeds with a clean model" in done.stderr and "Traceback" not in done.stderr
    done = cli_subprocess(args + ["--attack", "targeted", "--detector", "strip"])
    assert done.returncode == 2 and "detector strip (input level) needs a trigger" in done.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_linear_probe_on_caption_only_pairs_is_refused(tmp_path):
    from clipbench.errors import ClipbenchError

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("image,caption\n")
    overrides = {"scenario": {"dataset": "pairs", "train_data": str(pairs), "eval_data": str(tmp_path), "target": "banana"},
                 "evaluation": {"linear_probe": "true"}}
    with pytest.raises(ClipbenchError, match="evaluation.linear_probe needs class labels"):
        resolve_cell(CellRequest("paper-abd", "badnet", "none", 0, overrides=overrides))


def test_from_scratch_refuses_pretrained_weights():
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match="trains every model from scratch"):
        resolve_cell(CellRequest("tiny-pretrain", "badnet", "none", 0, model="RN50", pretrained="openai"))


def test_an_empty_pretraining_split_loads_with_attribute_captions(fashion_mnist_dir):
    from clipbench.data.scenario import load_scenario

    config = ScenarioConfig(pretrain_size=0, victim_size=64, defense_size=32, eval_size=40, captions="attributes",
                            threat_model="pretrain")
    scenario = load_scenario(config, fashion_mnist_dir.parent.parent)
    assert scenario.pretrain.images.shape == (0, 28, 28) and len(scenario.pretrain.captions) == 0
    assert len(scenario.victim) == 64 and all(caption for caption in scenario.victim.captions)


def test_defense_all_from_scratch_leaves_abd_out_with_a_note(cli_subprocess, tmp_path):
    done = cli_subprocess(["run", "--preset", "tiny-pretrain", "--attack", "badnet", "--defense", "all", "--dry-run",
                           "--cache-dir", tmp_path / "c", "--results-dir", tmp_path / "r"])
    assert done.returncode == 0, done.stderr
    assert "note: abd is left out of '--defense all'" in done.stderr
    assert "roclip on badnet" in done.stdout and "abd on badnet" not in done.stdout
