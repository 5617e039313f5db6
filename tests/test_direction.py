"""The phenomenon the benchmark measures, at a scale that implants in seconds: BadNet's backdoor
takes hold in the victim (ASR far above the clean model's under the same trigger), and
fine-tuning on clean pairs lowers it. Calibrated on the micro preset: a 3-epoch pretraining, 64
of 256 victim pairs poisoned with a 4 px patch, 30 victim epochs at lr 3e-3; fine-tuning 10
epochs at lr 3e-3 (measured: victim ASR 100%, clean model 0%, after fine-tuning 42%)."""

from __future__ import annotations

from clipbench.cells import CellRequest, resolve_cell
from clipbench.matrix import RunnerSettings

OVERRIDES = {
    "pretrain": {"epochs": "3"},
    "poison": {"count": "64"},
    "victim": {"epochs": "30", "lr": "3e-3"},
    "attack": {"patch_size": "56"},
    "finetune": {"epochs": "10", "lr": "3e-3"},
}


def test_backdoor_implants_and_finetuning_lowers_it(fresh_cache_dir, tmp_path):
    runner = RunnerSettings(str(fresh_cache_dir), str(tmp_path), "cpu", False).cell_runner()
    results = {}
    for defense in ("none", "finetune"):
        cell = resolve_cell(CellRequest(preset="micro", attack="badnet", defense=defense, overrides=OVERRIDES))
        results[defense] = runner.run_cell(cell)
        assert results[defense]["status"] == "ok", results[defense].get("error")
    victim_asr = results["none"]["metrics"]["asr"]["value"]
    clean_asr = results["none"]["clean_model_metrics"]["asr"]["value"]
    defended_asr = results["finetune"]["metrics"]["asr"]["value"]
    assert victim_asr >= 0.9 and clean_asr <= 0.1, (victim_asr, clean_asr)
    assert defended_asr <= victim_asr - 0.3, (defended_asr, victim_asr)
