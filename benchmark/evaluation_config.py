"""What the evaluation stage measures beside zero-shot CA and ASR (``--set evaluation.KEY=...``)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import require


@dataclass(frozen=True)
class EvaluationConfig:
    """``linear_probe``: also measure linear-probe accuracy (CLIP, Radford et al. 2021, appendix
    A.3; RoCLIP reports it beside zero-shot accuracy): a logistic regression on the frozen image
    features of the scenario's clean defense split and their class labels, its L2 strength chosen
    on ``probe_validation`` of that split (a fraction held out, drawn from the scenario's split
    seed: clipbench's choice, CLIP holds out part of each dataset's training set too) over
    ``probe_grid`` strengths from 1e-6 to 1e6, scored on the evaluation split
    (:mod:`clipbench.linear_probe`). Cached per model. It needs labelled data: Fashion-MNIST, not
    caption-only pairs.

    Every field is keyed only when set, so results without the probe keep their keys.
    """

    KEYED_WHEN_SET = ("linear_probe", "probe_validation", "probe_grid")

    linear_probe: bool = False
    probe_validation: float = 0.2
    probe_grid: int = 13  # one strength per decade of CLIP's 1e-6..1e6 search range

    def validate(self) -> None:
        require(0 < self.probe_validation < 1,
                f"evaluation.probe_validation must be in (0, 1), got {self.probe_validation}")
        require(self.probe_grid >= 1, f"evaluation.probe_grid must be >= 1, got {self.probe_grid}")


def check_probe_scenario(config: EvaluationConfig, scenario) -> None:
    """A linear probe needs a labelled clean training split: one line, before anything runs."""
    if not config.linear_probe:
        return
    require(scenario.dataset != "pairs",
            "evaluation.linear_probe needs class labels for its training split; scenario.dataset=pairs has captions "
            "only (the probe runs on Fashion-MNIST scenarios)")
    held_out = int(round(scenario.defense_size * config.probe_validation))
    require(held_out >= 1 and scenario.defense_size - held_out >= 1,
            f"evaluation.linear_probe trains on the defense split and validates on {config.probe_validation:g} of it; "
            f"scenario.defense_size ({scenario.defense_size}) leaves one of them empty")
