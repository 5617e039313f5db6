"""Resolve a requested cell (preset, model, attack, defense, seed, ``--set`` overrides) into typed,
validated configs before anything is computed, so bad input fails before anything is written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .config import apply_overrides, stable_hash, to_dict
from .errors import ClipbenchError
from .evaluation_config import check_probe_scenario
from .presets import Preset
from .registry import ATTACKS, DEFENSES, PRESETS
from .train_config import SCHEDULE_FIELDS, Schedule, schedule_values

SECTIONS = ("scenario", "pretrain", "poison", "victim", "evaluation", "attack", "defense")


@dataclass(frozen=True)
class CellRequest:
    """What the user asked for; ``overrides`` maps a section to ``--set`` key/value strings."""

    preset: str
    attack: str
    defense: str
    seed: int = 0
    model: Optional[str] = None
    pretrained: Optional[str] = None
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    sweep: Optional[str] = None  # "section.key" when the cell is a point of a budget sweep (clipbench.sweep)


@dataclass(frozen=True)
class Cell:
    """A fully resolved cell: every config typed and validated."""

    request: CellRequest
    preset: Preset
    attack_cls: Any
    attack_config: Any
    defense_cls: Any
    defense_config: Any
    defense_schedule: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def name(self) -> str:
        """File-system friendly name of the cell (a hash of any ``--set`` overrides appended)."""
        model = self.preset.model + (f"-{self.preset.pretrained}" if self.preset.pretrained else "")
        base = f"{self.preset.name}__{model}__{self.request.attack}__{self.request.defense}__seed{self.seed}"
        if self.request.sweep is not None:  # a sweep point is its own cell, apart from the same --set value
            base += "__" + stable_hash(self.request.overrides, self.request.sweep, length=8)
        elif any(self.request.overrides.values()):
            base += "__" + stable_hash(self.request.overrides, length=8)
        return base.replace("/", "-")

    def sweep_point(self) -> Optional[dict]:
        """``{"key": "defense.lr", "value": 1e-4}`` for a point of a budget sweep, else ``None``."""
        if self.request.sweep is None:
            return None
        key = self.request.sweep.split(".", 1)[1]
        return {"key": self.request.sweep, "value": getattr(self.defense_config, key)}

    def config_dict(self) -> dict:
        return {
            "preset": self.preset.name,
            "model": self.preset.model,
            "pretrained": self.preset.pretrained,
            "seed": self.seed,
            "scenario": to_dict(self.preset.scenario),
            "pretrain": to_dict(self.preset.pretrain),
            "poison": to_dict(self.preset.poison),
            "victim": to_dict(self.preset.victim),
            "attack": {"name": self.request.attack, **to_dict(self.attack_config)},
            "defense": {"name": self.request.defense, "stage": self.defense_cls.stage, **to_dict(self.defense_config)},
            **({"evaluation": evaluation} if (evaluation := to_dict(self.preset.evaluation)) else {}),
            "overrides": self.request.overrides,
            "defense_schedule": self.defense_schedule,
            **({"sweep": self.request.sweep} if self.request.sweep is not None else {}),
        }


def _checked(config: Any, section: str) -> Any:
    """Run a config's ``validate``; a plugin's plain ``ValueError``/``TypeError`` becomes one clear line."""
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except (ValueError, TypeError) as error:
            raise ClipbenchError(f"{section}: {error}") from None
    return config


def _layered(config: Any, layers: list[tuple[dict[str, str], str, str]]) -> Any:
    """``config`` with each ``(values, --set section, origin)`` layer applied in order."""
    for values, section, _ in layers:
        if values:
            config = apply_overrides(config, values, section, validate=False)
    return config


def _attack_config(cls: Any, preset: Preset, request: CellRequest) -> Any:
    name = request.attack
    layers = [(preset.attack_overrides.get(name, {}), "attack", f"preset {preset.name}"),
              (request.overrides.get("attack", {}), "attack", "--set attack"), (request.overrides.get(name, {}), name, f"--set {name}")]
    return _checked(_layered(cls.default_config(), layers), f"attack {name}")


def _defense_config(cls: Any, preset: Preset, request: CellRequest) -> tuple[Any, dict]:
    """The defense's config at the preset's scale, and the record of the schedule that applied.

    A config derived from :class:`Schedule` starts from the preset's schedule for the defense's
    stage (unless the preset keeps the method's paper schedule, ``Preset.own_schedule``); schedule
    values set afterwards by the preset's per-method overrides or by ``--set`` are departures,
    each recorded with its origin.
    """
    name = request.defense
    layers = [(preset.defense_overrides.get(name, {}), "defense", f"preset {preset.name}"),
              (request.overrides.get("defense", {}), "defense", "--set defense"),
              (request.overrides.get(name, {}), name, f"--set {name}")]
    base = cls.default_config()
    if not isinstance(base, Schedule):
        return _checked(_layered(base, layers), f"defense {name}"), {"applies": False}
    stage_schedule = preset.defense_schedules.get(cls.stage)
    own = name in preset.own_schedule or stage_schedule is None
    start = schedule_values(base if own else stage_schedule)
    config = dataclasses.replace(base, **start)
    departures: dict[str, dict] = {}
    for values, section, origin in layers:
        config = _layered(config, [(values, section, origin)])
        for key in values:
            if key in SCHEDULE_FIELDS:
                departures[key] = {"value": getattr(config, key), "schedule": start[key], "origin": origin}
    source = f"{name}'s paper schedule (its config defaults)" if own else f"preset {preset.name}, {cls.stage} schedule"
    record = {"applies": True, "stage": cls.stage, "source": source, "schedule": start, "departures": departures,
              "applied": schedule_values(config)}
    return _checked(config, f"defense {name}"), record


def _check_batches(preset: Preset, defense_cls: Any, defense_config: Any) -> None:
    """Every training batch must fit in the split it is drawn from (one line, before any training)."""
    scenario = preset.scenario
    splits = []
    if preset.victim.epochs:
        splits.append(("victim", preset.victim.batch_size, "victim_size", scenario.victim_size))
    if preset.pretrained is None and preset.pretrain.epochs:
        clean_split = ("victim_size", scenario.victim_size) if scenario.from_scratch else ("pretrain_size", scenario.pretrain_size)
        splits.append(("pretrain", preset.pretrain.batch_size, *clean_split))
    batch = getattr(defense_config, "batch_size", None)
    if isinstance(batch, int) and getattr(defense_config, "epochs", 1):
        if defense_cls.stage == "training_time":
            splits.append(("defense", batch, "victim_size", scenario.victim_size))
        elif getattr(defense_cls, "needs_clean_pairs", False):
            splits.append(("defense", batch, "defense_size", scenario.defense_size))
    for section, size, split, rows in splits:
        if size > rows:
            raise ClipbenchError(f"{section}.batch_size ({size}) is larger than its split, scenario.{split} ({rows} pairs)")


def config_keys(method: Any) -> set[str]:
    """The ``--set`` keys of an attack's or defense's config."""
    config = method.default_config()
    return {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()


def check_generic_overrides(requests: list[CellRequest]) -> None:
    """``--set attack.KEY`` / ``defense.KEY`` applies to the methods whose config has KEY; a key
    that none of the requested methods has is an error (one line, with the keys they do have)."""
    for section, registry, name_of in (("attack", ATTACKS, lambda r: r.attack), ("defense", DEFENSES, lambda r: r.defense)):
        names = sorted({name_of(r) for r in requests if r.overrides.get(section)})
        if not names:
            continue
        known = set().union(*(config_keys(registry.get(name)) for name in names))
        for request in requests:
            for key in request.overrides.get(section, {}):
                if key not in known:
                    valid = ", ".join(sorted(known)) or "none: they have no settings"
                    raise ClipbenchError(f"--set {section}.{key}: no selected {section} ({', '.join(names)}) has this key; "
                                         f"their keys: {valid}")


def resolve_cells(requests: list[CellRequest]) -> list[Cell]:
    """Check the requests' ``--set`` values against the methods they name, then resolve each."""
    check_generic_overrides(requests)
    return [resolve_cell(request) for request in requests]


def resolve_cell(request: CellRequest) -> Cell:
    """Check names and overrides and build the cell's configs; raise :class:`ClipbenchError`."""
    unknown = sorted(set(request.overrides) - set(SECTIONS) - set(ATTACKS.names()) - set(DEFENSES.valid_names()))
    if unknown:
        raise ClipbenchError(f"--set {unknown[0]}.*: unknown section; valid sections: {', '.join(SECTIONS)}, "
                             "or an attack or defense name (its values apply to that method only)")
    preset: Preset = PRESETS.get(request.preset)
    attack_cls = ATTACKS.get(request.attack)
    defense_cls = DEFENSES.get(request.defense)
    # a cell keeps the overrides that reach it: the generic sections and its own methods' sections,
    # and of the generic `attack` and `defense` sections the keys its own methods' configs have
    relevant = set(SECTIONS) | {request.attack, request.defense}
    own_keys = {"attack": config_keys(attack_cls), "defense": config_keys(defense_cls)}
    kept = {}
    for section, values in request.overrides.items():
        if section in own_keys:
            values = {k: v for k, v in values.items() if k in own_keys[section]}
        if section in relevant and values:
            kept[section] = values
    request = dataclasses.replace(request, overrides=kept)
    changes: dict[str, Any] = {}
    if request.model is not None:
        from .models import check_model_name

        check_model_name(request.model)
        changes["model"] = request.model
    if request.pretrained is not None:
        changes["pretrained"] = request.pretrained or None
    for section in ("scenario", "pretrain", "poison", "victim", "evaluation"):
        values = request.overrides.get(section, {})
        if section == "poison":
            values = {**preset.poison_overrides.get(request.attack, {}), **values}
        base = getattr(preset, section)
        if values:  # validated after the overrides: a preset may leave a value to the user (data paths)
            changes[section] = apply_overrides(base, values, section)
        else:
            base.validate()
    if request.seed < 0:
        raise ClipbenchError(f"seed must be >= 0, got {request.seed}")
    preset = dataclasses.replace(preset, **changes)
    check_probe_scenario(preset.evaluation, preset.scenario)
    if preset.scenario.from_scratch and preset.pretrained is not None:
        raise ClipbenchError(f"scenario.threat_model=pretrain trains every model from scratch; the pretrained weights "
                             f"{preset.pretrained!r} cannot be used (--pretrained '')")
    if request.pretrained:  # the preset's own weights are checked by its tests; a user's path or tag here
        from .models import check_pretrained

        check_pretrained(preset.model, preset.pretrained)
    if preset.poison.count > preset.scenario.victim_size:
        raise ClipbenchError(
            f"poison.count ({preset.poison.count}) is larger than the victim split ({preset.scenario.victim_size} pairs)"
        )
    attack_config = _attack_config(attack_cls, preset, request)
    defense_config, schedule = _defense_config(defense_cls, preset, request)
    defense_cls.check_scenario(defense_config, preset.scenario)
    _check_batches(preset, defense_cls, defense_config)
    return Cell(request, preset, attack_cls, attack_config, defense_cls, defense_config, schedule)
