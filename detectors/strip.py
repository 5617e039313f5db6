"""STRIP (Gao et al., ACSAC 2019, arXiv 1902.06531) on CLIP's zero-shot classifier, an input-level
detector: superimpose the input on ``perturbations`` clean held-out images and measure the entropy
of the zero-shot prediction on each blend. A clean input's prediction scatters across classes as
the other image takes over; a triggered one stays on the target as long as the trigger survives,
so its mean entropy is low. Score: the mean entropy, negated.

Defaults and choices: ``perturbations`` 100 (the paper's N = 100); superimposition adds the two
uint8 images at weight 1 each, saturating at 255 (the STRIP code's ``cv2.addWeighted(x, 1, y, 1, 0)``);
the held-out images are the scenario's clean defense split, drawn with replacement from the
detector's seed; the prediction is the softmax of the model's own temperature times the cosine
similarities to the zero-shot classifier (the distribution the model defines; zero-shot accuracy
needs only the argmax). STRIP targets classifiers; with CLIP it scores the zero-shot task the
benchmark evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.config import require
from clipbench.registry import register_detector

from .base import InputDetector, InputImages

#: Images blended per forward pass.
_BATCH = 512


@dataclass(frozen=True)
class StripConfig:
    """How many clean images each input is blended with."""

    perturbations: int = 100  # STRIP: N = 100

    def validate(self) -> None:
        require(self.perturbations >= 1, f"detector.perturbations must be >= 1, got {self.perturbations}")


@register_detector("strip")
class Strip(InputDetector):
    Config = StripConfig
    description = "entropy of zero-shot predictions of the input blended with clean images, negated (STRIP)"
    source = "Gao et al. ACSAC 2019 (arXiv 1902.06531); superimposition as in the official code"
    provenance = "adapted: a classifier defense on CLIP's zero-shot classifier"

    @classmethod
    def check_scenario(cls, config: StripConfig, scenario) -> None:
        require(scenario.defense_size > 0, "detector strip blends inputs with clean held-out images: it needs "
                                           "scenario.defense_size > 0")

    def score(self, inputs: InputImages):
        import torch
        import torch.nn.functional as F

        require(len(inputs.reference) > 0, "STRIP needs clean held-out images (scenario.defense_size > 0)")
        generator = torch.Generator().manual_seed(inputs.seed)
        model, classifier = inputs.model.model.eval(), inputs.classifier.to(inputs.device)
        scale = float(model.logit_scale.detach().exp())
        entropy = torch.zeros(len(inputs), dtype=torch.float64)
        with torch.no_grad():
            for _ in range(self.config.perturbations):
                partners = torch.randint(0, len(inputs.reference), (len(inputs),), generator=generator)
                for start in range(0, len(inputs), _BATCH):
                    rows = slice(start, start + _BATCH)
                    blend = (inputs.images[rows].int() + inputs.reference[partners[rows]].int()).clamp(0, 255).to(torch.uint8)
                    features = F.normalize(model.encode_image(inputs.pipeline.pixels(blend, inputs.device)).float(), dim=-1)
                    log_p = torch.log_softmax(scale * features @ classifier, dim=1)
                    entropy[rows] += (-(log_p.exp() * log_p).sum(dim=1)).double().cpu()
        return (-entropy / self.config.perturbations).numpy()
