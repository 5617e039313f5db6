"""``clipbench config show``: the ``--set`` keys of a section, their types, values and sources."""

from __future__ import annotations

import dataclasses
import typing

import click

from .errors import ClipbenchError


@click.group("config")
def config_group() -> None:
    """Inspect the typed configs that --set overrides."""


def _type_name(annotation) -> str:
    text = str(annotation) if typing.get_origin(annotation) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "")


def config_rows(section: str, preset_name: str) -> list[tuple[str, str, str, str, str]]:
    """(key, type, value on the preset, default of the config class, source) for every key of ``section``."""
    from .cells import SECTIONS, CellRequest, resolve_cell
    from .registry import ATTACKS, DEFENSES, PRESETS

    preset = PRESETS.get(preset_name)
    if section in ("attack", "defense"):
        names = ATTACKS.names() if section == "attack" else DEFENSES.names()
        raise ClipbenchError(f"config show {section}: the {section} section is each {section}'s own config; "
                             f"name one: {', '.join(names)}")
    if section in ATTACKS.names():
        cell = resolve_cell(CellRequest(preset=preset_name, attack=section, defense="none"))
        config, base = cell.attack_config, ATTACKS.get(section).default_config()
        overridden = dict(preset.attack_overrides.get(section, {}))
        schedule = {}
    elif section in DEFENSES.valid_names():
        cell = resolve_cell(CellRequest(preset=preset_name, attack="badnet", defense=section))
        config, base = cell.defense_config, DEFENSES.get(section).default_config()
        overridden = dict(preset.defense_overrides.get(section, {}))
        schedule = cell.defense_schedule if cell.defense_schedule.get("applies") else {}
    elif section in SECTIONS:
        config = getattr(preset, section)
        base, overridden, schedule = type(config)(), {}, {}
    else:
        raise ClipbenchError(f"config show {section}: unknown section; valid: scenario, pretrain, poison, victim, evaluation, "
                             "or an attack or defense name (see 'clipbench list attacks|defenses')")
    if not dataclasses.is_dataclass(config):
        return []
    hints = typing.get_type_hints(type(config))
    rows = []
    for field in dataclasses.fields(config):
        value, default = getattr(config, field.name), getattr(base, field.name)
        if field.name in overridden:
            source = f"preset {preset_name}"
        elif schedule and field.name in schedule.get("schedule", {}):
            source = schedule["source"]
        elif value != default:
            source = f"preset {preset_name}"
        else:
            source = "default"
        if section == "poison":  # per-attack values of this preset
            source += "".join(f"; {attack}: {values[field.name]}" for attack, values in sorted(preset.poison_overrides.items())
                              if field.name in values)
        rows.append((field.name, _type_name(hints.get(field.name, type(value))), repr(value), repr(default), source))
    return rows


@config_group.command("show")
@click.argument("section")
@click.option("--preset", default="tiny", show_default=True, help="the preset whose values are shown")
def show_config(section: str, preset: str) -> None:
    """List the --set keys of SECTION (scenario, pretrain, poison, victim, evaluation, or an attack or defense
    name) with their type, the value the preset gives them, the config's default and where the
    value comes from.

    \b
    Examples:
      clipbench config show cleanclip
      clipbench config show victim --preset paper-abd
    """
    from tabulate import tabulate

    rows = config_rows(section, preset)
    click.echo(tabulate(rows, headers=("key", "type", f"value ({preset})", "default", "source"), tablefmt="simple"))
    click.echo(f"set with: clipbench run --set {section}.KEY=VALUE")
