"""The generic registry: registration, errors with valid names, lists, and entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

import clipbench.registry as registry_module
from clipbench.errors import ClipbenchError
from clipbench.registry import ATTACKS, DEFENSES, Registry


class FakeEntryPoint:
    """Stands in for ``importlib.metadata.EntryPoint``: a name and a ``load()`` that is counted."""

    def __init__(self, name: str, obj):
        self.name = name
        self.obj = obj
        self.loads = 0

    def load(self):
        self.loads += 1
        return self.obj


def test_register_makes_the_class_available_under_its_name():
    registry = Registry("widget")

    @registry.register("alpha")
    class Alpha:
        pass

    assert registry.get("alpha") is Alpha
    assert Alpha.registry_name == "alpha"
    assert registry.names() == ["alpha"]
    assert "alpha" in registry
    assert "beta" not in registry


def test_duplicate_name_raises():
    registry = Registry("widget")

    @registry.register("alpha")
    class Alpha:
        pass

    class Other:
        pass

    with pytest.raises(ClipbenchError, match="widget 'alpha' is already registered"):
        registry.register("alpha")(Other)
    assert registry.get("alpha") is Alpha


def test_unknown_name_lists_valid_names_and_closest_match():
    registry = Registry("widget")
    for name in ("finetune", "cleanclip", "none"):
        registry.register(name)(type(name, (), {}))
    with pytest.raises(ClipbenchError) as info:
        registry.get("finetun")
    message = str(info.value)
    assert "unknown widget 'finetun'" in message
    assert "valid: cleanclip, finetune, none" in message
    assert "Did you mean 'finetune'?" in message


def test_unknown_name_without_close_match_has_no_hint():
    registry = Registry("widget")
    registry.register("finetune")(type("F", (), {}))
    with pytest.raises(ClipbenchError) as info:
        registry.get("zzzzzzzz")
    assert "valid: finetune" in str(info.value)
    assert "Did you mean" not in str(info.value)


def test_builtin_attacks_and_defenses_are_registered():
    assert "badnet" in ATTACKS.names()
    assert {"none", "finetune"} <= set(DEFENSES.names())


def test_resolve_list_all_and_comma_lists():
    assert DEFENSES.resolve_list("all") == DEFENSES.names()
    assert DEFENSES.resolve_list(" none , finetune ") == ["none", "finetune"]
    assert DEFENSES.resolve_list("finetune") == ["finetune"]


def test_resolve_list_rejects_unknown_and_empty():
    with pytest.raises(ClipbenchError, match="unknown defense 'nosuch'"):
        DEFENSES.resolve_list("none,nosuch")
    with pytest.raises(ClipbenchError, match="empty list"):
        DEFENSES.resolve_list(" , ")


def test_entry_points_are_listed_without_loading_and_loaded_on_get(monkeypatch):
    class ThirdParty:
        pass

    fake = FakeEntryPoint("thirdparty", ThirdParty)
    groups = []

    def fake_entry_points(group=None):
        groups.append(group)
        return [fake] if group == "clipbench.attacks" else []

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    registry = Registry("attack", (), "clipbench.attacks")

    @registry.register("builtin")
    class Builtin:
        pass

    assert registry.names() == ["builtin", "thirdparty"]
    assert "thirdparty" in registry
    assert fake.loads == 0, "listing must not import third-party plugins"
    assert groups and set(groups) == {"clipbench.attacks"}

    assert registry.get("thirdparty") is ThirdParty
    assert fake.loads == 1
    assert ThirdParty.registry_name == "thirdparty"
    assert registry.get("thirdparty") is ThirdParty
    assert fake.loads == 1, "a loaded entry point is remembered"
    assert registry.resolve_list("all") == ["builtin", "thirdparty"]


def test_global_registry_lists_entry_points(monkeypatch):
    fake = FakeEntryPoint("plugin-defense", object)
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group=None: [fake] if group == "clipbench.defenses" else []
    )
    assert "plugin-defense" in DEFENSES.names()
    assert "plugin-defense" not in ATTACKS.names()
    assert fake.loads == 0


def test_list_attacks_does_not_import_torch():
    code = (
        "import sys\n"
        "from clipbench.cli import cli\n"
        "cli.main(['list', 'attacks'], standalone_mode=False)\n"
        "cli.main(['list', 'defenses'], standalone_mode=False)\n"
        "heavy = [m for m in ('torch', 'open_clip', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "badnet" in done.stdout
    assert "finetune" in done.stdout and "post_training" in done.stdout
    assert "HEAVY []" in done.stdout
