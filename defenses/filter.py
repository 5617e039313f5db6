"""Filter-then-train: a data-level detector composed with training into a training-time defense,
named ``filter-<detector>`` (``--defense filter-kdistance``, ``filter-similarity``; every
data-level detector, plugins included, has one, built on first use by the defense registry).

The defense is handed the clean model and the poisoned training split (never which rows are
poisoned), like RoCLIP and SafeCLIP, and:

1. embeds every pair with the model its detector names: a detector that embeds with the clean
   model (SafeCLIP's similarity) uses the model it is handed; one that embeds with the poisoned
   model (Huang et al., ICLR 2025, detect with the model trained on the data they clean) first
   trains a copy of the clean model on all the pairs with the defense's schedule, the defender's
   own poisoned model (this doubles the defense's cost);
2. drops the ``drop_fraction`` of pairs the detector scores highest;
3. trains the clean model on the rest with the same schedule (on a preset, the victim's, as for
   every training-time defense).

``drop_fraction`` defaults to 0.1, a choice of clipbench's: the papers score pairs but name no
share to remove, and a defender who does not know the poisoning rate removes a fixed share above
the rates the attacks use (0.01-3%). The detector runs with its own defaults.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from clipbench.config import require

from .base import FineTuneConfig, FineTuneDefense


@dataclass(frozen=True)
class FilterConfig(FineTuneConfig):
    """The share of pairs to drop, on top of the training schedule."""

    drop_fraction: float = 0.1  # clipbench's choice (module docstring)

    def validate(self) -> None:
        super().validate()
        require(0 < self.drop_fraction < 1, f"defense.drop_fraction must be in (0, 1), got {self.drop_fraction}")


class FilterThenTrain(FineTuneDefense):
    """Base of the ``filter-<detector>`` defenses; :func:`filter_defense` binds a detector."""

    Config = FilterConfig
    stage = "training_time"
    provenance = "composition"
    detector_name = ""
    detector_cls: type = object

    @classmethod
    def check_scenario(cls, config, scenario) -> None:
        from clipbench.detectors.base import check_embedding_model

        super().check_scenario(config, scenario)
        check_embedding_model(cls.detector_cls, scenario)
        cls.detector_cls.check_scenario(cls.detector_cls.default_config(), scenario)

    def run(self, context):
        import numpy as np

        from clipbench.detection import checked_scores, embed_pairs
        from clipbench.detectors.base import PairEmbeddings
        from clipbench.seeding import sub_seed

        self.require_data(context)
        clean = context.model
        if self.detector_cls.embedding_model == "victim":  # the defender's own poisoned model scores the pairs
            context.model = copy.deepcopy(clean)
            self.fit(context, self.objective(context), phase="poisoned model for the detector")
        images, texts = embed_pairs(context.model, context.pipeline, context.data, context.device)
        detector = self.detector_cls(self.detector_cls.default_config())
        scores = checked_scores(self.detector_name, detector.score(PairEmbeddings(
            images=images, texts=texts, seed=sub_seed(context.seed, "detector"))), len(context.data))
        order = np.argsort(scores, kind="stable")  # least suspicious first
        dropped = int(round(self.config.drop_fraction * len(scores)))
        keep, removed = np.sort(order[: len(scores) - dropped]), np.sort(order[len(scores) - dropped:])
        context.extras["filter"] = {"detector": self.detector_name, "pairs": len(scores), "dropped": dropped,
                                    "dropped_rows": removed.tolist()}  # the harness scores them against the manifest
        context.model = clean
        self.fit(context, self.objective(context), data=context.data.subset(keep), phase="filtered")
        return context.model


def filter_defense(detector_name: str, detector_cls: type) -> type:
    """The ``filter-<detector_name>`` defense class."""
    require(detector_cls.level == "data", f"filter-{detector_name}: {detector_name} is a {detector_cls.level}-level "
                                          "detector; only data-level detectors filter training pairs")
    return type(f"Filter_{detector_name}", (FilterThenTrain,), {
        "detector_name": detector_name, "detector_cls": detector_cls, "__module__": __name__,
        "description": f"drop the pairs detector {detector_name} scores most suspicious, then train on the rest",
        "source": f"filter-then-train with {detector_name}: {detector_cls.source}",
        "digest_modules": (detector_cls.__module__,),
        "__doc__": f"Filter-then-train with detector {detector_name} (:mod:`clipbench.defenses.filter`).",
    })

