"""DECREE (Feng et al., CVPR 2023, arXiv 2303.15180), a model-level detector on CLIP's image
encoder: invert the smallest trigger (a mask and a pattern) that makes the encoder map every
shadow image to nearly one embedding. A backdoored encoder already has such a shortcut, so a
small mask suffices; a clean one needs most of the image replaced. Score: ``1 - PL1``, where PL1
is the inverted mask's L1 norm over the image's area (the paper's detection statistic, backdoored
when small), so higher is more suspicious.

The optimisation, from the official code (``main.py``) with its CLIP settings:

- stamped image ``(1 - m) * x + m * p`` in pixel space, ``m`` (``S x S``, shared by the channels)
  and ``p`` (``3 x S x S``) through ``tanh`` to (0, 1) and (0, 255), both initialised uniformly
  at random (``mask_init=rand``);
- loss: minus the mean cosine similarity between the embeddings of different images of the
  batch, plus ``lambda * ||m||_1`` with the mask repeated over the three channels, as the code
  sums it (PL1 is the single-channel mask's norm over the area, the same ratio); Adam with betas (0.5, 0.9) at ``lr`` 0.5 (the CLIP run
  script's), lowered to 0.1 from epoch 200 and 0.05 from epoch 500;
- ``lambda`` starts at 1e-3, is multiplied by 5 after more than 5 consecutive steps with the
  similarity above ``threshold`` 0.99 and divided by 5 after more than 5 below (never below
  1e-7), and reset to 1e-3 once it has sat under 1e-7 while succeeding for more than 10 steps;
- the result is the smallest mask norm seen at a step whose similarity is above the threshold;
  the run stops once an epoch's mean similarity is above it and the best norm has not improved
  for more than 35 steps, or after ``max_epochs`` (the code: 1,000; here 300 by default, a cap
  for the CPU, reported in each result);
- shadow set: ``shadow_images`` clean images, batch 32 (the code samples its shadow set from
  ImageNet; here the scenario's clean defense split).

If no step ever reaches the threshold, PL1 is 1 (the whole image), score 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.config import require
from clipbench.registry import register_detector

from .base import ModelDetector, ModelUnderTest

_EPSILON = 1e-6  # the code's epsilon(): keeps arctanh of the initial values finite


@dataclass(frozen=True)
class DecreeConfig:
    """DECREE's optimisation settings (official code, CLIP)."""

    lr: float = 0.5  # DECREE's CLIP run script
    batch_size: int = 32  # DECREE: batch 32 for CLIP
    shadow_images: int = 500  # DECREE's shadow set for CLIP: about 500 ImageNet images
    threshold: float = 0.99  # DECREE: --thres 0.99
    max_epochs: int = 300  # DECREE: 1,000; a CPU cap (clipbench's choice)

    def validate(self) -> None:
        require(self.lr > 0, f"detector.lr must be > 0, got {self.lr}")
        require(self.batch_size >= 2, f"detector.batch_size must be >= 2, got {self.batch_size}")
        require(self.shadow_images >= self.batch_size,
                f"detector.shadow_images ({self.shadow_images}) must be at least detector.batch_size ({self.batch_size})")
        require(0 < self.threshold < 1, f"detector.threshold must be in (0, 1), got {self.threshold}")
        require(self.max_epochs >= 1, f"detector.max_epochs must be >= 1, got {self.max_epochs}")


def mean_pairwise_cosine(features):
    """Mean cosine similarity over the ordered pairs of different rows."""
    import torch.nn.functional as F

    normalised = F.normalize(features, dim=-1)
    n = len(normalised)
    similarity = normalised @ normalised.T
    return (similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))


class _Lambda:
    """DECREE's adaptive weight of the mask norm."""

    initial, factor, patience, minimum = 1e-3, 5.0, 5, 1e-7

    def __init__(self):
        self.value, self.up, self.down, self.floor_count = self.initial, 0, 0, 0

    def update(self, success: bool) -> None:
        if self.value < self.minimum and success:
            self.floor_count += 1
            if self.floor_count > 2 * self.patience:
                self.value, self.up, self.down = self.initial, 0, 0
        else:
            self.floor_count = 0
        self.up, self.down = (self.up + 1, 0) if success else (0, self.down + 1)
        if self.up > self.patience:
            self.value = self.value * self.factor if self.value < 1e5 else self.value
            self.up = 0
        elif self.down > self.patience:
            self.value = self.value / self.factor if self.value >= self.minimum else self.value
            self.down = 0


@register_detector("decree")
class Decree(ModelDetector):
    Config = DecreeConfig
    description = "size of the smallest inverted trigger that collapses the image encoder's embeddings (1 - PL1)"
    source = "DECREE, Feng et al. CVPR 2023 (arXiv 2303.15180); defaults from the official code"

    @classmethod
    def check_scenario(cls, config: DecreeConfig, scenario) -> None:
        require(scenario.defense_size >= config.batch_size,
                f"detector decree draws its shadow images from the clean defense split, which has "
                f"{scenario.defense_size} images, fewer than detector.batch_size ({config.batch_size})")

    def invert(self, inputs: ModelUnderTest) -> dict:
        """Run the inversion; the best mask's PL1 norm, whether any step reached the threshold,
        the epochs run and the final similarity."""
        import numpy as np
        import torch

        config, device = self.config, inputs.device
        generator = torch.Generator().manual_seed(inputs.seed)
        require(len(inputs.shadow) >= config.batch_size, f"DECREE has {len(inputs.shadow)} shadow images, fewer than "
                                                          f"detector.batch_size ({config.batch_size})")
        rows = torch.randperm(len(inputs.shadow), generator=generator)[: config.shadow_images]
        shadow = inputs.shadow[rows].to(device).float()
        size = shadow.shape[-1]
        squash = 2 - _EPSILON
        mask_raw = torch.atanh((torch.rand(size, size, generator=generator, dtype=torch.float64) - 0.5) * squash)
        pattern_raw = torch.atanh((torch.rand(3, size, size, generator=generator, dtype=torch.float64) - 0.5) * squash)
        mask_raw, pattern_raw = mask_raw.to(device).requires_grad_(), pattern_raw.to(device).requires_grad_()
        optimizer = torch.optim.Adam([mask_raw, pattern_raw], lr=config.lr, betas=(0.5, 0.9))
        encoder = inputs.model.model.eval()
        encoder.requires_grad_(False)
        weight = _Lambda()
        best, stale, epoch, similarity_mean = float("inf"), 0, 0, 0.0  # stale: steps since the best mask improved
        for epoch in range(config.max_epochs):
            for group in optimizer.param_groups:
                group["lr"] = config.lr if epoch < 200 else (0.1 if epoch < 500 else 0.05)
            order = torch.randperm(len(shadow), generator=generator)
            similarities = []
            for start in range(0, len(shadow) - config.batch_size + 1, config.batch_size):
                batch = shadow[order[start : start + config.batch_size]]
                mask = (torch.tanh(mask_raw) / squash + 0.5).clamp(0, 1)
                pattern = ((torch.tanh(pattern_raw) / squash + 0.5) * 255).clamp(0, 255)
                stamped = ((1 - mask) * batch + mask * pattern).clamp(0, 255).float()
                features = encoder.encode_image(inputs.pipeline.normalize(stamped))
                similarity = mean_pairwise_cosine(features.float())
                norm = mask.sum()
                loss = -similarity + weight.value * 3 * norm  # the code's mask is repeated over 3 channels
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                similarity_now, norm_now = float(similarity.detach()), float(norm.detach())
                success = similarity_now > config.threshold
                if success and norm_now < best:
                    best, stale = norm_now, 0
                elif best < float("inf"):
                    stale += 1
                weight.update(success)
                similarities.append(similarity_now)
            similarity_mean = float(np.mean(similarities))
            if similarity_mean > config.threshold and stale > 7 * _Lambda.patience:
                break
        found = best < float("inf")
        return {"pl1": best / (size * size) if found else 1.0, "found": found, "epochs": epoch + 1,
                "final_similarity": similarity_mean, "shadow_images": len(shadow)}

    def score(self, inputs: ModelUnderTest):
        import numpy as np

        result = self.invert(inputs)
        self.last_run = result
        return np.array([1.0 - result["pl1"]])
