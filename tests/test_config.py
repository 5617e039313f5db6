"""``--set`` overrides: typed conversion, validation, and cell resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from clipbench.cells import CellRequest, resolve_cell
from clipbench.config import apply_overrides, parse_set_options, require, stable_hash
from clipbench.errors import ClipbenchError


@dataclass(frozen=True)
class Example:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    mode: Literal["fast", "slow"] = "fast"
    level: Literal[1, 2, 3] = 1
    limit: Optional[int] = None
    label: str = "x"

    def validate(self) -> None:
        require(self.count >= 0, f"count must be >= 0, got {self.count}")


def test_apply_overrides_converts_to_field_types():
    updated = apply_overrides(
        Example(),
        {"count": "7", "rate": "1e-3", "flag": "true", "mode": "slow", "level": "3", "limit": "12", "label": "abc"},
        "example",
    )
    assert updated == Example(count=7, rate=1e-3, flag=True, mode="slow", level=3, limit=12, label="abc")
    assert type(updated.count) is int and type(updated.rate) is float and type(updated.level) is int


@pytest.mark.parametrize("text,value", [("1", True), ("yes", True), ("off", False), ("False", False)])
def test_bool_spellings(text, value):
    assert apply_overrides(Example(), {"flag": text}, "example").flag is value


def test_optional_accepts_none_and_value():
    assert apply_overrides(Example(limit=3), {"limit": "none"}, "example").limit is None
    assert apply_overrides(Example(), {"limit": "5"}, "example").limit == 5
    with pytest.raises(ClipbenchError, match="expected int"):
        apply_overrides(Example(), {"limit": "five"}, "example")


def test_apply_overrides_returns_a_copy():
    original = Example()
    apply_overrides(original, {"count": "9"}, "example")
    assert original.count == 1


def test_unknown_key_names_valid_keys():
    with pytest.raises(ClipbenchError) as info:
        apply_overrides(Example(), {"cnt": "1"}, "example")
    message = str(info.value)
    assert "example.cnt" in message and "unknown key" in message
    assert "valid keys of example: count, flag, label, level, limit, mode, rate" in message


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("count", "abc", "expected int, got 'abc'"),
        ("count", "1.5", "expected int"),
        ("rate", "fast", "expected float"),
        ("flag", "maybe", "expected true or false"),
        ("mode", "medium", "'medium' is not one of fast, slow"),
        ("level", "4", "not one of 1, 2, 3"),
    ],
)
def test_ill_typed_values_raise(key, value, fragment):
    with pytest.raises(ClipbenchError, match=fragment):
        apply_overrides(Example(), {key: value}, "example")


def test_validate_runs_after_overrides():
    with pytest.raises(ClipbenchError, match="count must be >= 0, got -2"):
        apply_overrides(Example(), {"count": "-2"}, "example")


def test_parse_set_options_groups_by_section():
    parsed = parse_set_options(["victim.epochs=3", "victim.lr = 1e-4", "attack.pattern=checkerboard", "a.b=x=y"])
    assert parsed == {"victim": {"epochs": "3", "lr": "1e-4"}, "attack": {"pattern": "checkerboard"}, "a": {"b": "x=y"}}


@pytest.mark.parametrize("item", ["victim.epochs", "epochs=3"])
def test_parse_set_options_rejects_malformed_items(item):
    with pytest.raises(ClipbenchError, match="expected section.key=value"):
        parse_set_options([item])


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def request(**kwargs) -> CellRequest:
    fields = {"preset": "micro", "attack": "badnet", "defense": "none"}
    fields.update(kwargs)
    return CellRequest(**fields)


def test_resolve_cell_applies_overrides_to_sections():
    cell = resolve_cell(request(
        defense="finetune",
        overrides={"victim": {"epochs": "2"}, "attack": {"pattern": "checkerboard"}, "defense": {"lr": "2e-3"}},
    ))
    assert cell.preset.victim.epochs == 2
    assert cell.attack_config.pattern == "checkerboard"
    # preset overrides of the defense apply first, the user's on top
    assert cell.defense_config.lr == 2e-3
    assert cell.defense_config.batch_size == 32
    config = cell.config_dict()
    assert config["victim"]["epochs"] == 2
    assert config["defense"]["name"] == "finetune" and config["defense"]["stage"] == "post_training"
    plain = resolve_cell(request(defense="finetune"))
    assert plain.name != cell.name, "overrides must change the cell's file name"


def test_resolve_cell_rejects_unknown_section():
    with pytest.raises(ClipbenchError, match="--set nosuch.\\*: unknown section; valid sections: scenario"):
        resolve_cell(request(overrides={"nosuch": {"key": "1"}}))


def test_method_sections_reach_only_their_method():
    overrides = {"finetune": {"epochs": "2"}, "roclip": {"pool_size": "16"}, "badnet": {"patch_size": "3"}}
    tuned = resolve_cell(request(defense="finetune", overrides=overrides))
    assert tuned.defense_config.epochs == 2 and tuned.attack_config.patch_size == 3
    assert tuned.request.overrides == {"finetune": {"epochs": "2"}, "badnet": {"patch_size": "3"}}
    other = resolve_cell(request(attack="blended", defense="none", overrides=overrides))
    assert other.name == resolve_cell(request(attack="blended", defense="none")).name
    with pytest.raises(ClipbenchError, match="--set finetune.pool_size: unknown key"):
        resolve_cell(request(defense="finetune", overrides={"finetune": {"pool_size": "3"}}))


def test_generic_sections_reach_the_methods_that_have_the_key():
    from clipbench.cells import resolve_cells

    matrix = [request(attack=a, defense=d, overrides={"defense": {"lr": "1e-4"}, "attack": {"k": "8"}})
              for a in ("badnet", "wanet") for d in ("none", "finetune")]
    none, finetune, wanet_none, _ = resolve_cells(matrix)
    assert finetune.defense_config.lr == 1e-4 and wanet_none.attack_config.k == 8
    assert none.request.overrides == {}, "a key the methods lack does not reach the cell (nor its name)"
    assert none.name == resolve_cell(request(defense="none")).name
    assert finetune.request.overrides == {"defense": {"lr": "1e-4"}}, "BadNet has no k: the WaNet key is dropped for it"
    with pytest.raises(ClipbenchError, match=r"--set defense.lr: no selected defense \(none\) has this key"):
        resolve_cells([request(defense="none", overrides={"defense": {"lr": "1e-4"}})])
    with pytest.raises(ClipbenchError, match=r"--set attack.nosuch: no selected attack \(badnet\)"):
        resolve_cells([request(overrides={"attack": {"nosuch": "1"}})])


def test_resolve_cell_rejects_negative_seed():
    with pytest.raises(ClipbenchError, match="seed must be >= 0"):
        resolve_cell(request(seed=-1))


@pytest.mark.parametrize(
    "section,key,value,fragment",
    [
        ("victim", "lr", "-1", "lr must be positive"),
        ("victim", "batch_size", "1", "batch_size must be >= 2"),
        ("poison", "count", "-5", "poison.count must be >= 0"),
        ("scenario", "pretrain_size", "70000", "exceed the 60000 training images"),
        ("attack", "patch_size", "0", "attack.patch_size must be positive"),
        ("defense", "epochs", "-1", "epochs must be >= 0"),
    ],
)
def test_resolve_cell_validates_values(section, key, value, fragment):
    defense = "finetune" if section == "defense" else "none"
    with pytest.raises(ClipbenchError, match=fragment):
        resolve_cell(request(defense=defense, overrides={section: {key: value}}))


def test_resolve_cell_rejects_unknown_names():
    with pytest.raises(ClipbenchError, match="unknown preset"):
        resolve_cell(request(preset="nosuch"))
    with pytest.raises(ClipbenchError, match="unknown attack"):
        resolve_cell(request(attack="nosuch"))
    with pytest.raises(ClipbenchError, match="unknown defense"):
        resolve_cell(request(defense="nosuch"))


def test_config_show_lists_keys_types_values_and_sources(cli_runner):
    done = cli_runner(["config", "show", "cleanclip"])
    assert done.exit_code == 0, done.output
    lines = {line.split()[0]: line for line in done.output.splitlines() if line.strip()}
    assert "0.0005" in lines["lr"] and "1e-05" in lines["lr"] and "preset tiny, post_training schedule" in lines["lr"]
    assert "float" in lines["inmodal_weight"] and lines["inmodal_weight"].rstrip().endswith("default")
    badclip = cli_runner(["config", "show", "badclip"])
    assert "preset tiny" in [line for line in badclip.output.splitlines() if line.startswith("patch_size")][0]
    assert cli_runner(["config", "show", "victim", "--preset", "paper-abd"]).exit_code == 0
    unknown = cli_runner(["config", "show", "nosuch"])
    assert unknown.exit_code != 0 and "unknown section" in str(unknown.exception)


def test_a_presets_poison_values_per_attack_come_before_set(monkeypatch):
    import dataclasses

    from clipbench.registry import PRESETS

    micro = PRESETS.get("micro")
    monkeypatch.setattr(PRESETS, "get", lambda name: dataclasses.replace(micro, poison_overrides={"wanet": {"count": "40"}}))
    assert resolve_cell(request(attack="wanet")).preset.poison.count == 40
    assert resolve_cell(request(attack="badnet")).preset.poison.count == micro.poison.count
    assert resolve_cell(request(attack="wanet", overrides={"poison": {"count": "8"}})).preset.poison.count == 8
    assert resolve_cell(request(attack="wanet")).config_dict()["poison"]["count"] == 40
