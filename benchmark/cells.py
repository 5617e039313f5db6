"""Resolve a requested cell (preset, model, attack, defense, seed, ``--set`` overrides) into typed,
validated configs before anything is computed, so bad input fails before anything is written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .config import apply_overrides, stable_hash, to_dict
from .errors import ClipbenchError
from .presets import Preset
from .registry import ATTACKS, DEFENSES, PRESETS

SECTIONS = ("scenario", "pretrain", "poison", "victim", "attack", "defense")


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


@dataclass(frozen=True)
class Cell:
    """A fully resolved cell: every config typed and validated."""

    request: CellRequest
    preset: Preset
    attack_cls: Any
    attack_config: Any
    defense_cls: Any
    defense_config: Any

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def name(self) -> str:
        """File-system friendly name of the cell (a hash of any ``--set`` overrides appended)."""
        model = self.preset.model + (f"-{self.preset.pretrained}" if self.preset.pretrained else "")
        base = f"{self.preset.name}__{model}__{self.request.attack}__{self.request.defense}__seed{self.seed}"
        if any(self.request.overrides.values()):
            base += "__" + stable_hash(self.request.overrides, length=8)
        return base.replace("/", "-")

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
            "overrides": self.request.overrides,
        }


def _method_config(cls: Any, preset_overrides: dict[str, str], user_overrides: dict[str, str], section: str,
                   base: Any = None) -> Any:
    config = cls.default_config() if base is None else base
    if preset_overrides:
        config = apply_overrides(config, preset_overrides, section)
    config = apply_overrides(config, user_overrides, section)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def resolve_cell(request: CellRequest) -> Cell:
    """Check names and overrides and build the cell's configs; raise :class:`ClipbenchError`."""
    unknown = sorted(set(request.overrides) - set(SECTIONS) - set(ATTACKS.names()) - set(DEFENSES.names()))
    if unknown:
        raise ClipbenchError(f"--set {unknown[0]}.*: unknown section; valid sections: {', '.join(SECTIONS)}, "
                             "or an attack or defense name (its values apply to that method only)")
    preset: Preset = PRESETS.get(request.preset)
    attack_cls = ATTACKS.get(request.attack)
    defense_cls = DEFENSES.get(request.defense)
    # a cell keeps the overrides that reach it: the generic sections and its own methods' sections
    relevant = set(SECTIONS) | {request.attack, request.defense}
    request = dataclasses.replace(request, overrides={k: v for k, v in request.overrides.items() if k in relevant and v})
    changes: dict[str, Any] = {}
    if request.model is not None:
        from .models import check_model_name

        check_model_name(request.model)
        changes["model"] = request.model
    if request.pretrained is not None:
        changes["pretrained"] = request.pretrained or None
    for section in ("scenario", "pretrain", "poison", "victim"):
        values = request.overrides.get(section, {})
        base = getattr(preset, section)
        if values:  # validated after the overrides: a preset may leave a value to the user (data paths)
            changes[section] = apply_overrides(base, values, section)
        else:
            base.validate()
    if request.seed < 0:
        raise ClipbenchError(f"seed must be >= 0, got {request.seed}")
    preset = dataclasses.replace(preset, **changes)
    if preset.poison.count > preset.scenario.victim_size:
        raise ClipbenchError(
            f"poison.count ({preset.poison.count}) is larger than the victim split ({preset.scenario.victim_size} pairs)"
        )
    attack_config = _method_config(
        attack_cls, preset.attack_overrides.get(request.attack, {}), request.overrides.get("attack", {}), "attack"
    )
    attack_config = _method_config(attack_cls, {}, request.overrides.get(request.attack, {}), request.attack, attack_config)
    defense_config = _method_config(
        defense_cls, preset.defense_overrides.get(request.defense, {}), request.overrides.get("defense", {}), "defense"
    )
    defense_config = _method_config(defense_cls, {}, request.overrides.get(request.defense, {}), request.defense, defense_config)
    defense_cls.check_scenario(defense_config, preset.scenario)
    return Cell(request, preset, attack_cls, attack_config, defense_cls, defense_config)
