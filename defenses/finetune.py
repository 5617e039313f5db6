"""Plain fine-tuning: the victim trained further on clean pairs with the CLIP loss alone.

The "FT" baseline of ABD's Table II (arXiv 2409.15968) and CleanCLIP's multimodal-only ablation
(arXiv 2303.03323); defaults are CleanCLIP's defense recipe (see :class:`FineTuneSettings`).
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.registry import register_defense

from .base import Defense, FineTuneSettings, require_clean_pairs


@dataclass(frozen=True)
class FinetuneConfig(FineTuneSettings):
    """CleanCLIP's fine-tuning schedule (batch 64, lr 1e-5, 10 epochs, 50 warmup steps)."""


@register_defense("finetune")
class Finetune(Defense):
    Config = FinetuneConfig
    stage = "post_training"
    description = "fine-tune the victim on clean pairs with the CLIP loss only"
    source = "ABD Table II 'FT' (arXiv 2409.15968); CleanCLIP recipe (arXiv 2303.03323)"

    def run(self, context):
        from clipbench.training import train_contrastive

        require_clean_pairs(context, "finetune")
        train_contrastive(
            context.model, context.pipeline, context.images, context.pairs,
            self.config.train_config(context.seed), description="defense finetune", device=context.device,
        )
        return context.model
