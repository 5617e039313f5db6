"""CleanCLIP (Bansal et al., ICCV 2023, arXiv 2303.03323): fine-tune the victim on clean pairs with
the multimodal CLIP loss plus unimodal self-supervised losses.

``loss = clip_weight * CLIP(I, T) + inmodal_weight * (L_image(I, aug(I)) + L_text(T, EDA(T))) / 2``,
as in CleanCLIP's code (weights 1 and 1; batch 64, lr 1e-5, 10 epochs, 50 warmup steps; AutoAugment
and EDA 0.1/0.1/0.1/0.1 with one augmented sentence; docs/protocol.md, "The ABD Table I setting"). The image augmentation is
chosen by ``augmentation`` (see :mod:`clipbench.augment`: the default suits any resolution;
``autoaugment`` is CleanCLIP's). The optimizer is the code's (AdamW betas 0.9/0.999, eps 1e-8, no
gradient clipping; :class:`~clipbench.defenses.base.FineTuneConfig`).

Departures from the code: each in-modal InfoNCE is averaged over both directions where the code
takes one; EDA is redrawn for every batch where the code draws one augmented caption per sample
when it builds the data set (docs/protocol.md, "The official code, read line by line").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipbench.config import require
from clipbench.registry import register_defense

from .base import FineTuneConfig, FineTuneDefense


@dataclass(frozen=True)
class CleanClipConfig(FineTuneConfig):
    """CleanCLIP's loss weights and augmentation on top of its fine-tuning schedule."""

    clip_weight: float = 1.0  # CleanCLIP code: 1
    inmodal_weight: float = 1.0  # CleanCLIP code: 1
    augmentation: Literal["simclr", "autoaugment"] = "simclr"
    eda_rate: float = 0.1  # CleanCLIP: 0.1 for each EDA operation

    def validate(self) -> None:
        super().validate()
        require(self.clip_weight >= 0, f"defense.clip_weight must be >= 0, got {self.clip_weight}")
        require(self.inmodal_weight >= 0, f"defense.inmodal_weight must be >= 0, got {self.inmodal_weight}")
        require(self.clip_weight + self.inmodal_weight > 0, "defense.clip_weight and defense.inmodal_weight cannot both be 0")
        require(0 <= self.eda_rate <= 1, f"defense.eda_rate must be in [0, 1], got {self.eda_rate}")


@register_defense("cleanclip")
class CleanClip(FineTuneDefense):
    Config = CleanClipConfig
    stage = "post_training"
    description = "fine-tune on clean pairs with CLIP loss + image/text self-supervised losses"
    source = "Bansal et al. ICCV 2023 (arXiv 2303.03323); defaults from the official code"

    def objective(self, context):
        from clipbench.training import clip_loss

        from .unimodal import unimodal_terms

        config = self.config
        eda, generator = self.eda(context), self.generator(context)

        def objective(batch):
            images, texts = batch.encode_images(), batch.encode_texts()
            loss = config.clip_weight * clip_loss(images, texts, batch.logit_scale)
            if config.inmodal_weight > 0:
                image_loss, text_loss = unimodal_terms(batch, eda, generator, config.augmentation, images, texts)
                loss = loss + config.inmodal_weight * 0.5 * (image_loss + text_loss)
            return loss

        return objective
