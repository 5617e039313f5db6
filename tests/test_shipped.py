"""Shipped clean models: installed only for their exact clean key, checked by sha256, switchable off."""

from __future__ import annotations

import pytest

from clipbench import shipped
from clipbench.cells import CellRequest, resolve_cell
from clipbench.digests import file_sha256
from clipbench.errors import ClipbenchError
from clipbench.models import WEIGHTS_FILE, create_model, save_checkpoint
from clipbench.plan import describe_stage, plan_cell


def _cell(preset: str = "micro", **pretrain: str):
    overrides = {"pretrain": pretrain} if pretrain else {}
    return resolve_cell(CellRequest(preset=preset, attack="badnet", defense="none", overrides=overrides))


@pytest.fixture
def shipped_micro(tmp_path, monkeypatch):
    """A micro clean model shipped into a temporary weights folder under the micro clean key."""
    cell = _cell()
    clip = create_model(cell.preset.model, None, seed=123)
    save_checkpoint(clip, tmp_path / "checkpoint")
    directory = tmp_path / "weights"
    directory.mkdir()
    model = shipped.ship(tmp_path / "checkpoint", "micro-clean", plan_cell(cell)["clean"].key, "a command", {"epoch": 1},
                         init_seed=123, factors=[], directory=directory)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", directory)
    return cell, model


def test_clean_stage_installs_the_shipped_model(shipped_micro, fresh_cache_dir):
    from clipbench.stages import Workspace
    from clipbench.stages.clean import clean_model

    cell, model = shipped_micro
    record = clean_model(Workspace(fresh_cache_dir, device="cpu"), cell)
    assert record.built and record.meta["shipped"]["sha256"] == model.sha256
    assert file_sha256(record.path / WEIGHTS_FILE) == model.sha256
    assert "shipped weights micro-clean" in describe_stage(cell, "clean")


def test_other_pretraining_or_switch_off_is_not_served(shipped_micro, monkeypatch):
    cell, model = shipped_micro
    assert shipped.shipped_for(plan_cell(cell)["clean"].key) == model
    assert shipped.shipped_for(plan_cell(_cell(epochs="2"))["clean"].key) is None
    monkeypatch.setenv(shipped.ENV_SWITCH, "off")
    assert shipped.shipped_for(plan_cell(cell)["clean"].key) is None
    assert "pretrained by clipbench" in describe_stage(cell, "clean")


def test_damaged_weights_are_refused(shipped_micro, tmp_path):
    _, model = shipped_micro
    data = bytearray(model.weights.read_bytes())
    data[-1] ^= 1
    model.weights.write_bytes(bytes(data))
    with pytest.raises(ClipbenchError, match="sha256"):
        model.install(tmp_path / "installed")
    assert not (tmp_path / "installed" / WEIGHTS_FILE).exists()


@pytest.mark.parametrize("model", shipped.shipped_models(), ids=lambda m: m.name)
def test_each_shipped_model_is_intact_and_belongs_to_a_preset(model):
    assert file_sha256(model.weights) == model.file_sha256
    from clipbench.registry import PRESETS

    cells = [_cell(name) for name in PRESETS.names()  # presets on user data (paper-roclip) need it to resolve
             if PRESETS.get(name).pretrained is None and PRESETS.get(name).scenario.dataset != "pairs"]
    keys = {plan_cell(cell)["clean"].key for cell in cells}
    assert model.clean_key in keys, f"{model.name} matches no preset's clean model: its preset changed"


def test_a_shipped_clean_model_is_not_counted_as_a_training(shipped_micro, tmp_path, monkeypatch):
    from clipbench.matrix import plan_matrix

    cell, _ = shipped_micro
    assert "1 trainings (0 clean, 1 victims" in plan_matrix([cell], tmp_path).summary(1)
    monkeypatch.setenv(shipped.ENV_SWITCH, "off")
    assert "2 trainings (1 clean, 1 victims" in plan_matrix([cell], tmp_path).summary(1)


def test_a_pretrained_model_ships_compact_and_rebuilds_bit_for_bit(tmp_path, fresh_cache_dir, monkeypatch):
    from safetensors.torch import load_file

    from clipbench.compact_weights import decay_factors
    from clipbench.stages import Workspace
    from clipbench.stages.clean import clean_model
    from clipbench.training import schedule_multipliers

    monkeypatch.setenv(shipped.ENV_SWITCH, "off")
    cell = _cell()
    ws = Workspace(fresh_cache_dir, device="cpu")
    checkpoint = clean_model(ws, cell).path
    config = cell.preset.pretrain
    factors = decay_factors(schedule_multipliers(config, len(ws.scenario(cell).pretrain)), config.lr, config.weight_decay)
    assert len(factors) > 0 and min(factors) < 1
    directory = tmp_path / "weights"
    directory.mkdir()
    model = shipped.ship(checkpoint, "micro-clean", plan_cell(cell)["clean"].key, "a command", {}, config.seed, factors,
                         directory=directory)
    stored = load_file(str(model.weights))
    assert "token_embedding.weight" not in stored
    assert 0 < len(stored["token_embedding.weight::rows"]) < 1000  # the few tokens the captions use
    assert model.weights.stat().st_size < (checkpoint / WEIGHTS_FILE).stat().st_size / 2
    model.install(tmp_path / "installed")
    assert file_sha256(tmp_path / "installed" / WEIGHTS_FILE) == file_sha256(checkpoint / WEIGHTS_FILE) == model.sha256


def test_a_rebuild_that_differs_is_refused_and_leaves_nothing(shipped_micro, tmp_path):
    import dataclasses

    _, model = shipped_micro
    other_init = dataclasses.replace(model, init_seed=model.init_seed + 1)
    with pytest.raises(ClipbenchError, match="rebuild to sha256"):
        other_init.install(tmp_path / "installed")
    assert not (tmp_path / "installed" / WEIGHTS_FILE).exists()
