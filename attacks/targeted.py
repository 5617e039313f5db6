"""Targeted data poisoning (Carlini & Terzis, ICLR 2022, arXiv 2106.09667), as RoCLIP (arXiv
2303.06854) and SafeCLIP (arXiv 2310.05862) evaluate it: a few target images, each put into the
training data many times with captions of an adversarial class, so that the trained model
classifies that very image as that class. No trigger: the attack succeeds on the targets only.

- Targets: ``targets`` evaluation images (RoCLIP reports 16: its 93.75% is 15 of 16), drawn from
  the trigger seed, among the images of ``target_class`` when it is set; each gets the
  adversarial class ``adversarial_class``, or when that is empty one drawn uniformly from the
  classes other than its own (RoCLIP's notebook pairs each of 8 categories' image with one other
  category; a class per target is clipbench's generalisation). The targets are removed from
  clean accuracy and from the linear probe's test set, which use the other evaluation images.
- Poisoned pairs: the preset's ``poison.count`` rows of the victim split, split evenly among the
  targets (RoCLIP's code writes 100 captions per target, so its setting is ``poison.count =
  100 x targets``); each row's image is replaced by its target image when the row is drawn
  (``apply``, the training loop's single entry point of triggers) and its caption is a random
  template of the scenario naming the adversarial class.
- Success (stored as ``asr``, so the tables carry it beside the backdoors' ASR): the fraction of
  targets classified as their adversarial class, with a Wilson interval over the targets;
  ``ra``: the fraction still classified as their own class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from clipbench.config import require
from clipbench.registry import register_attack

from .base import Attack, AttackContext, PoisonManifest


@dataclass(frozen=True)
class TargetedConfig:
    """How many evaluation images are targeted, and (optionally) their class and the class they
    are poisoned towards (class names of the scenario; empty: any)."""

    targets: int = 16  # RoCLIP / SafeCLIP: 16 targets (93.75% = 15/16)
    target_class: str = ""
    adversarial_class: str = ""

    def validate(self) -> None:
        require(self.targets >= 1, f"attack.targets must be >= 1, got {self.targets}")
        require(not self.adversarial_class or self.adversarial_class != self.target_class,
                f"attack.adversarial_class equals attack.target_class ({self.target_class!r}): a target image must be "
                "poisoned towards a class other than its own")


def eligible_targets(config: TargetedConfig, labels: np.ndarray, classnames: tuple[str, ...]) -> np.ndarray:
    """Rows of the evaluation split that may be targets (of ``target_class``, not of
    ``adversarial_class``), or one clear error when the names are unknown or too few rows remain."""
    labels = np.asarray(labels)
    allowed = np.ones(len(labels), dtype=bool)
    for key, keep in (("target_class", True), ("adversarial_class", False)):
        name = getattr(config, key)
        if name:
            require(name in classnames, f"attack.{key} {name!r} is not a class of this scenario; its classes: "
                                        f"{', '.join(classnames)}")
            allowed &= (labels == classnames.index(name)) == keep
    rows = np.flatnonzero(allowed)
    where = "".join([f" of class {config.target_class!r}" if config.target_class else "",
                     f" not of the adversarial class {config.adversarial_class!r}" if config.adversarial_class
                     else " (of a class other than their adversarial class)"])
    require(config.targets <= len(rows),
            f"attack.targets ({config.targets}) is more than the {len(rows)} evaluation images{where}")
    return rows


@register_attack("targeted")
class TargetedPoisoning(Attack):
    Config = TargetedConfig
    description = "target images paired with captions of an adversarial class; success on the targets themselves"
    source = "Carlini & Terzis ICLR 2022 (arXiv 2106.09667); RoCLIP's and SafeCLIP's protocol"
    needs_evaluation_images = True
    kind = "targeted"

    @classmethod
    def check_data(cls, config: TargetedConfig, scenario: Any) -> None:
        """Before anything runs: the class names exist and enough evaluation images can be targets."""
        require(len(scenario.classnames) >= 2, "targeted poisoning needs at least two classes")
        eligible_targets(config, scenario.evaluation.labels, tuple(scenario.classnames))

    def prepare(self, clean: Optional[Any] = None, context: Optional[AttackContext] = None) -> None:
        import torch

        require(context is not None and context.evaluation_images is not None,
                "targeted poisoning draws its targets from the evaluation images")
        labels = np.asarray(context.evaluation_labels)
        classes = len(context.classnames)
        require(classes >= 2, "targeted poisoning needs at least two classes")
        eligible = eligible_targets(self.config, labels, tuple(context.classnames))
        rng = np.random.default_rng(self.seed)
        rows = np.sort(rng.choice(eligible, size=self.config.targets, replace=False))
        if self.config.adversarial_class:
            adversarial = np.full(len(rows), tuple(context.classnames).index(self.config.adversarial_class))
        else:
            shift = rng.integers(1, classes, size=len(rows))  # any class but the target's own
            adversarial = (labels[rows] + shift) % classes
        self.classnames = tuple(context.classnames)
        self.state = {"target_rows": torch.as_tensor(rows, dtype=torch.int64),
                      "adversarial": torch.as_tensor(adversarial, dtype=torch.int64),
                      "target_images": context.evaluation_images[rows].clone()}

    def poison(self, pairs, count, target_index, language, rng, label_consistent=False) -> PoisonManifest:
        import torch

        targets = len(self.state["target_rows"])
        require(not label_consistent, "targeted poisoning has no label-consistent variant (poison.label_consistent)")
        require(count >= targets, f"poison.count ({count}) must give each of the {targets} targets at least one pair")
        require(count <= len(pairs), f"poison.count ({count}) is larger than the victim split ({len(pairs)} pairs)")
        per_target = count // targets
        rows = np.sort(rng.choice(len(pairs), size=per_target * targets, replace=False))
        assigned = rng.permutation(np.repeat(np.arange(targets), per_target))
        adversarial = self.state["adversarial"].numpy()
        captions = [language.named(self.classnames[adversarial[t]], 1, rng)[0] for t in assigned]
        ids = np.asarray(pairs.ids)[rows]
        order = np.argsort(ids, kind="stable")
        self.state["poison_ids"] = torch.as_tensor(ids[order], dtype=torch.int64)
        self.state["poison_target"] = torch.as_tensor(assigned[order], dtype=torch.int64)
        return PoisonManifest(rows, captions)

    def apply(self, images, ids):
        """The poisoned rows' images replaced by their targets; every other image unchanged (the
        attack has no trigger to put on evaluation images)."""
        import torch

        out = images.clone()
        poison_ids = self.state.get("poison_ids")
        if poison_ids is None or not len(poison_ids):
            return out
        ids = torch.as_tensor(ids, dtype=torch.int64)
        slot = torch.searchsorted(poison_ids, ids).clamp(max=len(poison_ids) - 1)
        hit = poison_ids[slot] == ids
        if hit.any():
            out[hit] = self.state["target_images"][self.state["poison_target"][slot[hit]]].to(out.dtype)
        return out

    def targeted_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict:
        """CA without the targets, success and robust accuracy over the targets (see the module docstring)."""
        from clipbench.metrics import Proportion, topk_hits, wilson_interval

        rows = self.state["target_rows"].numpy()
        adversarial = self.state["adversarial"].numpy()
        keep = np.ones(len(labels), dtype=bool)
        keep[rows] = False
        predicted = logits.argmax(axis=1)

        def proportion(hits: int, total: int, definition: str) -> Proportion:
            return Proportion(hits / total, int(hits), int(total), wilson_interval(int(hits), int(total)), definition)

        metrics = {"ca_top1": proportion(int((predicted[keep] == labels[keep]).sum()), int(keep.sum()),
                                         "zero-shot top-1 accuracy on clean evaluation images, the attack's targets excluded")}
        if logits.shape[1] >= 5:
            metrics["ca_top5"] = proportion(int(topk_hits(logits[keep], labels[keep], 5).sum()), int(keep.sum()),
                                            "zero-shot top-5 accuracy on clean evaluation images, the attack's targets excluded")
        success = int((predicted[rows] == adversarial).sum())
        definition = "targeted poisoning success: fraction of the target images classified as their adversarial class"
        metrics["asr"] = proportion(success, len(rows), definition)
        metrics["asr_all"] = proportion(success, len(rows), definition)
        metrics["ra"] = proportion(int((predicted[rows] == labels[rows]).sum()), len(rows),
                                   "fraction of the target images still classified as their own class")
        return metrics
