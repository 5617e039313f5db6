"""The stage graph of a cell, computed from configs and code alone (no data, no models).

Each stage's artifact key hashes the stage name, the version of the stage code shared by every
method (:data:`STAGE_VERSIONS`), its config, its parents' keys, and for the poison and defense
stages the digest of the attack's or defense's own implementation
(:func:`clipbench.code_digest.method_digest`). So the whole graph of a matrix, and what of it is
cached, is known before anything runs (``clipbench run --dry-run``), and editing a method
recomputes that method's stages and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cells import Cell
from .code_digest import method_digest
from .config import stable_hash, to_dict
from .model_zoo import architecture_digest

#: Versions of the stage code shared by all methods (training loop, evaluation, artifact format):
#: bumped when that code changes what a stage produces; part of every artifact key, guarded by
#: ``tests/test_golden.py``. Version 2: artifacts record the sha256 of their files.
STAGE_VERSIONS = {"clean": 2, "poison": 2, "reference": 2, "victim": 2, "defense": 2, "evaluation": 2, "classifier": 2}

#: Stages that train a model (what a matrix's cost is counted in).
TRAINING_STAGES = ("clean", "victim", "defense")


@dataclass(frozen=True)
class PlannedStage:
    """One node of the graph: its stage, key and the config parts the key hashes."""

    stage: str
    key: str
    parts: dict


def artifact_key(stage: str, parts: dict) -> str:
    return stable_hash(stage, STAGE_VERSIONS[stage], parts)


def _node(stage: str, parts: dict) -> PlannedStage:
    return PlannedStage(stage, artifact_key(stage, parts), parts)


def plan_cell(cell: Cell) -> dict[str, PlannedStage]:
    """The cell's stages in execution order: clean, poison, reference, victim (post-training
    defenses only), defense."""
    preset = cell.preset
    clean = _node("clean", {
        "model": preset.model, "architecture": architecture_digest(preset.model),
        "pretrained": preset.pretrained, "pretrain": to_dict(preset.pretrain),
        "scenario": to_dict(preset.scenario) if preset.pretrained is None else None,
    })
    poison = _node("poison", {
        "attack": cell.request.attack, "attack_code": method_digest(cell.attack_cls),
        "attack_config": to_dict(cell.attack_config), "poison": to_dict(preset.poison),
        "scenario": to_dict(preset.scenario), "seed": cell.seed, "model": preset.model,
        "parents": {"clean": clean.key} if cell.attack_cls.needs_clean_model else {},
    })
    pattern_file = getattr(cell.attack_config, "pattern_file", "")
    if pattern_file:  # a file edited in place is a new trigger
        from .digests import file_sha256

        poison = _node("poison", {**poison.parts, "pattern_sha256": file_sha256(Path(pattern_file))})
    evaluation = to_dict(preset.evaluation)  # {} unless the preset or --set asks for more than CA and ASR (the probe)
    reference = _node("reference", {"parents": {"clean": clean.key, "poison": poison.key},
                                    **({"evaluation": evaluation} if evaluation else {})})
    stages = {"clean": clean, "poison": poison, "reference": reference}
    training_time = cell.defense_cls.stage == "training_time"
    # what training starts from: the clean model, or (pre-training threat model) the seed's random initialisation
    start = ({"scratch": {"model": preset.model, "architecture": clean.parts["architecture"]}}
             if preset.scenario.from_scratch else {"clean": clean.key})
    if not training_time:
        stages["victim"] = _node("victim", {
            "victim": to_dict(preset.victim), "seed": cell.seed, "parents": {**start, "poison": poison.key},
        })
    parents = {**start, "poison": poison.key} if training_time else {"victim": stages["victim"].key}
    stages["defense"] = _node("defense", {
        "defense": cell.request.defense, "defense_code": method_digest(cell.defense_cls),
        "defense_config": to_dict(cell.defense_config), "seed": cell.seed,
        "victim": to_dict(preset.victim) if training_time else None, "parents": parents,
    })
    return stages


def code_digests(cell: Cell) -> dict[str, str]:
    """The digests of the cell's attack and defense implementations."""
    return {"attack": method_digest(cell.attack_cls), "defense": method_digest(cell.defense_cls)}


def run_key(cell: Cell) -> str:
    """Key of the cell's result: its whole resolved config, the architecture, the stage code
    versions and the digests of its methods' code."""
    return stable_hash("cell", STAGE_VERSIONS, cell.config_dict(), architecture_digest(cell.preset.model),
                       code_digests(cell))


def _clipbench_pretraining(cell: Cell) -> str:
    from .shipped import shipped_for

    shipped = shipped_for(plan_cell(cell)["clean"].key)
    return f"shipped weights {shipped.name}" if shipped else "pretrained by clipbench"


def describe_stage(cell: Cell, stage: str) -> str:
    """What the artifact of ``stage`` is for ``cell``, in a few words (plans and job graphs)."""
    request = cell.request
    return {
        "data": f"data of the {cell.preset.name} scenario",
        "clean": f"{cell.preset.model} ({cell.preset.pretrained or _clipbench_pretraining(cell)})",
        "poison": f"{request.attack} seed {request.seed}",
        "reference": f"clean model x {request.attack} seed {request.seed}",
        "victim": f"victim {request.attack} seed {request.seed}",
        "defense": f"{request.defense} on {request.attack} seed {request.seed}" + (
            f" ({point['key']}={point['value']})" if (point := cell.sweep_point()) else ""),
        "evaluation": f"cell {cell.name}",
    }[stage]
