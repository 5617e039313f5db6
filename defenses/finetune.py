"""Plain fine-tuning: the victim trained further on clean pairs with the CLIP loss alone.

The "FT" baseline of ABD's Table II (arXiv 2409.15968) and CleanCLIP's multimodal-only ablation
(arXiv 2303.03323); its schedule is the preset's post-training schedule (the paper default is
CleanCLIP's defense recipe, :class:`~clipbench.defenses.base.FineTuneConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.registry import register_defense

from .base import FineTuneConfig, FineTuneDefense


@dataclass(frozen=True)
class FinetuneConfig(FineTuneConfig):
    """CleanCLIP's fine-tuning schedule (batch 64, lr 1e-5, 10 epochs, 50 warmup steps)."""


@register_defense("finetune")
class Finetune(FineTuneDefense):
    Config = FinetuneConfig
    stage = "post_training"
    description = "fine-tune the victim on clean pairs with the CLIP loss only"
    source = "ABD Table II 'FT' (arXiv 2409.15968); CleanCLIP recipe (arXiv 2303.03323)"
