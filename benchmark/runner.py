"""Execute one cell as a chain of cached stages:

``clean model -> poison (trigger + manifest) -> victim -> defense -> evaluation -> result JSON``.

Each stage's artifact key hashes its config, its parents' keys and the stage's code version, so a
clean model serves every attack and a victim serves every post-training defense. A
training-time defense hangs off the clean model and the poisoned manifest instead of the victim.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from . import seeding
from .cache import ArtifactStore, ensure_writable
from .cells import Cell
from .config import stable_hash, to_dict
from .data.real import RowView, resized
from .data.scenario import ScenarioData, load_scenario
from .errors import ClipbenchError
from .image_pipeline import ImagePipeline
from .models import ClipModel, create_model, load_checkpoint, save_checkpoint
from .plan import plan_cell, run_key
from .resources import measure
from .results import build_result, write_result



@dataclass
class StageRecord:
    key: str
    path: Path
    meta: dict
    built: bool
    stats: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"key": self.key, "cached": not self.built, **self.stats, "build": self.meta.get("build_stats", {})}


class Runner:
    """Runs cells against one artifact cache and one results folder."""

    def __init__(self, cache_dir: Path, results_dir: Path, device: str = "auto", force: bool = False):
        self.store = ArtifactStore(cache_dir)
        self.results_dir = ensure_writable(results_dir, "results directory")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.force = force
        self._scenarios: dict[str, ScenarioData] = {}
        self._resized: dict[tuple, torch.Tensor] = {}
        self._forced: set[tuple[str, str]] = set()  # with --force, each artifact is rebuilt once per run

    # ----------------------------------------------------------------- helpers
    def scenario(self, cell: Cell) -> ScenarioData:
        key = stable_hash(to_dict(cell.preset.scenario))
        if key not in self._scenarios:
            self._scenarios[key] = load_scenario(cell.preset.scenario, self.store.root)
        return self._scenarios[key]

    def images(self, cell: Cell, split: str, pipeline: ImagePipeline) -> torch.Tensor:
        """The split's images at the model's resolution (uint8), computed once per process."""
        key = (stable_hash(to_dict(cell.preset.scenario)), split, pipeline)
        if key not in self._resized:
            images = getattr(self.scenario(cell), split).images
            if isinstance(images, RowView):  # real-scale data: decoded per batch, never all at once
                self._resized[key] = resized(images, pipeline.size)
            else:
                self._resized[key] = pipeline.to_model_resolution(images)
        return self._resized[key]

    def _stage(self, cell: Cell, stage: str, build) -> StageRecord:
        planned = plan_cell(cell)[stage]
        key, key_parts = planned.key, planned.parts
        with measure() as stats:
            def timed_build(folder: Path) -> dict:
                with measure() as build_stats:
                    meta = build(folder)
                return {**meta, "build_stats": build_stats, "parents": key_parts.get("parents", {})}

            force = self.force and (stage, key) not in self._forced
            path, meta, built = self.store.get_or_build(stage, key, timed_build, force=force)
            self._forced.add((stage, key))
        return StageRecord(key, path, meta, built, stats)

    # ------------------------------------------------------------------ stages
    def clean_model(self, cell: Cell) -> StageRecord:
        """Pretrain the clean tiny model, or fetch the pretrained open_clip weights."""
        preset = cell.preset

        def build(folder: Path) -> dict:
            clip = create_model(preset.model, preset.pretrained, seed=preset.pretrain.seed)
            stats = {}
            if preset.pretrained is None:
                from .training import train_contrastive

                pipeline = ImagePipeline.from_model(clip.model)
                scenario = self.scenario(cell)
                stats = train_contrastive(clip, pipeline, self.images(cell, "pretrain", pipeline), scenario.pretrain,
                                          preset.pretrain, description="pretrain clean model", device=self.device)
            save_checkpoint(clip, folder, {"stage": "clean"})
            return {"train": stats}

        return self._stage(cell, "clean", build)

    def make_attack(self, cell: Cell, image_size: int):
        return cell.attack_cls(cell.attack_config, seeding.sub_seed(cell.seed, "trigger"), image_size)

    def poison(self, cell: Cell, clean: StageRecord) -> StageRecord:
        """Build the trigger artifact and the poisoned manifest of the victim split."""
        def build(folder: Path) -> dict:
            from safetensors.torch import save_file

            clip = load_checkpoint(clean.path)
            pipeline = ImagePipeline.from_model(clip.model)
            attack = self.make_attack(cell, pipeline.size)
            scenario = self.scenario(cell)
            from clipbench.attacks.base import AttackContext

            context = AttackContext(pairs=scenario.victim, images=self.images(cell, "victim", pipeline), pipeline=pipeline,
                                    target_index=scenario.target_index, target_name=scenario.target_name, device=self.device,
                                    classnames=tuple(scenario.classnames))
            attack.prepare(clip if attack.needs_clean_model else None, context)
            manifest = attack.poison(scenario.victim, cell.preset.poison.count, scenario.target_index,
                                     scenario.target_name, seeding.numpy_rng(cell.seed, "poison_rows"),
                                     label_consistent=cell.preset.poison.label_consistent)
            save_file({k: v.contiguous() for k, v in attack.state.items()}, str(folder / "trigger.safetensors"))
            (folder / "manifest.json").write_text(json.dumps(manifest.to_json()))
            return {"poisoned_rows": len(manifest.rows), "image_size": pipeline.size}

        return self._stage(cell, "poison", build)

    def load_attack(self, cell: Cell, poison: StageRecord):
        from safetensors.torch import load_file

        from clipbench.attacks.base import PoisonManifest

        attack = self.make_attack(cell, poison.meta["image_size"])
        attack.load_state(load_file(str(poison.path / "trigger.safetensors")))
        manifest = PoisonManifest.from_json(json.loads((poison.path / "manifest.json").read_text()))
        return attack, manifest

    def _poisoned_captions(self, cell: Cell, manifest) -> list[str]:
        captions = list(self.scenario(cell).victim.captions)
        for row, caption in zip(manifest.rows, manifest.captions):
            captions[int(row)] = caption
        return captions

    def victim(self, cell: Cell, clean: StageRecord, poison: StageRecord) -> StageRecord:
        """Fine-tune the clean model on the victim split with the poisoned rows in it."""
        def build(folder: Path) -> dict:
            import dataclasses

            from .training import train_contrastive

            clip = load_checkpoint(clean.path)
            pipeline = ImagePipeline.from_model(clip.model)
            attack, manifest = self.load_attack(cell, poison)
            config = dataclasses.replace(cell.preset.victim, seed=seeding.sub_seed(cell.seed, "victim_shuffle"))
            victim_pairs = self.scenario(cell).victim
            rows, transform = attack.training_trigger(manifest, victim_pairs)
            stats = train_contrastive(clip, pipeline, self.images(cell, "victim", pipeline), victim_pairs,
                                      config, trigger_rows=rows, trigger=transform,
                                      captions=self._poisoned_captions(cell, manifest),
                                      description="train poisoned victim", device=self.device)
            save_checkpoint(clip, folder, {"stage": "victim"})
            return {"train": stats}

        return self._stage(cell, "victim", build)

    def defense(self, cell: Cell, clean: StageRecord, poison: StageRecord, victim: Optional[StageRecord]) -> StageRecord:
        """Run the defense; a training-time defense starts from the clean model and poisoned data."""
        from clipbench.defenses.base import DefenseContext

        training_time = cell.defense_cls.stage == "training_time"

        def build(folder: Path) -> dict:
            source = clean if training_time else victim
            clip = load_checkpoint(source.path)
            pipeline = ImagePipeline.from_model(clip.model)
            scenario = self.scenario(cell)
            seed = seeding.sub_seed(cell.seed, "defense")
            if training_time:
                attack, manifest = self.load_attack(cell, poison)
                rows, transform = attack.training_trigger(manifest, scenario.victim)
                context = DefenseContext(model=clip, pipeline=pipeline, pairs=scenario.victim,
                                         images=self.images(cell, "victim", pipeline), seed=seed, device=self.device,
                                         captions=self._poisoned_captions(cell, manifest), trigger_rows=rows,
                                         trigger=transform, cache_dir=str(self.store.root))
            else:
                context = DefenseContext(model=clip, pipeline=pipeline, pairs=scenario.defense,
                                         images=self.images(cell, "defense", pipeline), seed=seed, device=self.device,
                                         cache_dir=str(self.store.root))
            defended = cell.defense_cls(cell.defense_config).run(context)
            if defended is None:
                source_stage = "clean" if training_time else "victim"
                (folder / "same_as.json").write_text(json.dumps({"stage": source_stage, "key": source.key}))
            else:
                save_checkpoint(defended, folder, {"stage": "defense", "defense": cell.request.defense})
            return {"extras": _json_ready(context.extras)}

        return self._stage(cell, "defense", build)

    def defended_model(self, defense: StageRecord) -> ClipModel:
        same_as = defense.path / "same_as.json"
        if same_as.exists():  # the defense returned its input model (the victim, or the clean model)
            source = json.loads(same_as.read_text())
            return load_checkpoint(self.store.path(source["stage"], source["key"]))
        return load_checkpoint(defense.path)

    def evaluate(self, cell: Cell, model_key: str, clip: ClipModel, poison: StageRecord) -> tuple[dict, dict]:
        """Metrics of ``clip``; ``model_key`` (the weights' sha256) keys the cached text classifier."""
        from .evaluation import evaluate_backdoor, zero_shot_classifier

        with measure() as stats:
            pipeline = ImagePipeline.from_model(clip.model)
            scenario = self.scenario(cell)
            attack, _ = self.load_attack(cell, poison)
            classifier = zero_shot_classifier(clip, scenario.classnames, scenario.templates, model_key,
                                              self.store.root, self.device)
            metrics = evaluate_backdoor(clip, pipeline, scenario.evaluation, self.images(cell, "evaluation", pipeline),
                                        classifier, scenario.target_index, attack.apply, device=self.device)
        return {k: v.to_dict() for k, v in metrics.items()}, stats

    def clean_reference(self, cell: Cell, clean: StageRecord, poison: StageRecord) -> StageRecord:
        """CA and ASR of the clean model with this trigger: the baseline every cell is read against."""
        def build(folder: Path) -> dict:
            clip = load_checkpoint(clean.path)
            metrics, _ = self.evaluate(cell, clip.weights_sha256, clip, poison)
            return {"metrics": metrics}

        return self._stage(cell, "reference", build)

    # -------------------------------------------------------------------- cell
    def result_path(self, cell: Cell) -> Path:
        return self.results_dir / f"{cell.name}.json"

    def existing_result(self, cell: Cell) -> Optional[dict]:
        """A finished result of this exact cell, if one is stored."""
        path = self.result_path(cell)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if stored.get("run_key") == run_key(cell) and stored.get("status") == "ok":
            return stored
        return None

    def run_cell(self, cell: Cell) -> dict:
        """Run (or reuse) every stage of ``cell`` and write its result JSON; failures are recorded."""
        if not self.force:
            existing = self.existing_result(cell)
            if existing is not None:
                return existing
        stages: dict[str, dict] = {}
        artifacts: dict[str, str] = {}
        self.scenario(cell)  # missing or corrupt data is an input error: it stops the run, nothing is recorded
        try:
            clean = self.clean_model(cell)
            stages["clean"], artifacts["clean"] = clean.summary(), clean.key
            poison = self.poison(cell, clean)
            stages["poison"], artifacts["poison"] = poison.summary(), poison.key
            reference = self.clean_reference(cell, clean, poison)
            stages["reference"] = reference.summary()
            victim = None
            if cell.defense_cls.stage == "post_training":
                victim = self.victim(cell, clean, poison)
                stages["victim"], artifacts["victim"] = victim.summary(), victim.key
            defense = self.defense(cell, clean, poison, victim)
            stages["defense"], artifacts["defense"] = defense.summary(), defense.key
            model = self.defended_model(defense)
            metrics, eval_stats = self.evaluate(cell, model.weights_sha256, model, poison)
            stages["evaluation"] = {"cached": False, **eval_stats}
            result = build_result(cell, run_key(cell), "ok", None, metrics, stages, artifacts, self.device,
                                  self.scenario(cell))
            result["clean_model_metrics"] = reference.meta["metrics"]
        except ClipbenchError as error:  # divergence, data a stage cannot use...: recorded; the matrix goes on
            result = build_result(cell, run_key(cell), "failed", str(error), {}, stages, artifacts, self.device, None)
        except (RuntimeError, ValueError, FloatingPointError) as error:
            result = build_result(cell, run_key(cell), "failed", f"{type(error).__name__}: {error}", {}, stages,
                                  artifacts, self.device, None, traceback.format_exc())
        write_result(self.result_path(cell), result)
        return result


def _json_ready(extras: dict) -> dict:
    """The JSON-serialisable entries of a defense's ``extras`` (kept in its artifact's metadata)."""
    ready = {}
    for name, value in extras.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        ready[name] = value
    return ready
