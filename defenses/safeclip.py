"""SafeCLIP (Yang et al., ICML 2024, arXiv 2310.05862): a training-time defense.

From the clean model on the (poisoned) training pairs:

1. unimodal warm-up: ``unimodal_epochs`` of image-vs-augmented-image and text-vs-EDA-text losses
   only, which separates the modalities' clusters without learning poisoned image-text links;
2. CLIP warm-up: ``clip_warmup_epochs`` of the CLIP loss at a small learning rate;
3. then every epoch: the cosine similarity of every image with its caption; a two-component
   Gaussian mixture on those similarities; pairs in the top ``ratio`` by similarity form the safe
   set (CLIP loss), the rest the risky set (unimodal losses). The first ratio is the fraction with
   p(clean) >= ``clean_threshold`` under the mixture (``initial_ratio`` when that is 0); it grows
   by ``ratio_step`` per epoch up to ``max_ratio``.

Defaults are the official code's (docs/protocol.md, "Training-time defense hyper-parameters"):
5 unimodal warm-up epochs, 1 CLIP warm-up epoch at lr 5e-6, p >= 0.9, fallback ratio 0.15, +0.01
per epoch, cap 0.85, lr 5e-4, 32 epochs, batch 128. Deviations from the official code, by construction of this implementation: each epoch is
two calls of the shared training loop (safe pairs, then risky pairs), each with its own AdamW
(moments restart every epoch; the official code keeps one optimizer) and its own cosine decay
from the epoch's learning rate (itself cosine-decayed over epochs), so the effective learning
rate follows a sawtooth below the official schedule; all safe batches come before all risky
ones; the mixture is refitted every epoch but only its first fit sets the initial ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from clipbench.config import require
from clipbench.registry import register_defense

from .base import FineTuneConfig, FineTuneDefense

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class SafeClipConfig(FineTuneConfig):
    """SafeCLIP's warm-ups, mixture split and schedule (official code defaults)."""

    epochs: int = 32
    batch_size: int = 128
    lr: float = 5e-4
    warmup_steps: int = 0
    unimodal_epochs: int = 5
    clip_warmup_epochs: int = 1
    clip_warmup_lr: float = 5e-6
    clean_threshold: float = 0.9
    initial_ratio: float = 0.15
    ratio_step: float = 0.01
    max_ratio: float = 0.85
    augmentation: Literal["simclr", "autoaugment"] = "simclr"
    eda_rate: float = 0.1

    def validate(self) -> None:
        super().validate()
        for name in ("unimodal_epochs", "clip_warmup_epochs"):
            require(getattr(self, name) >= 0, f"defense.{name} must be >= 0, got {getattr(self, name)}")
        require(self.clip_warmup_lr > 0, f"defense.clip_warmup_lr must be positive, got {self.clip_warmup_lr}")
        for name in ("clean_threshold", "initial_ratio", "ratio_step", "max_ratio", "eda_rate"):
            value = getattr(self, name)
            require(0 <= value <= 1, f"defense.{name} must be in [0, 1], got {value}")


def pair_similarities(context) -> "np.ndarray":
    """Cosine similarity of every (possibly triggered) image with its caption under the current model."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from clipbench.training import apply_trigger_rows

    clip, pipeline, data = context.model, context.pipeline, context.data
    images, captions = data.images, data.captions
    poisoned = np.zeros(len(images), dtype=bool)
    poisoned[data.trigger_rows] = True
    ids = torch.as_tensor(data.pairs.ids)
    clip.model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 512):
            rows = np.arange(start, min(start + 512, len(images)))
            batch = apply_trigger_rows(images[rows], poisoned[rows], data.trigger, ids[rows])
            image = F.normalize(clip.model.encode_image(pipeline.normalize(batch).to(context.device)).float(), dim=-1)
            text = F.normalize(clip.model.encode_text(clip.tokenize([captions[i] for i in rows]).to(context.device)).float(), dim=-1)
            out.append((image * text).sum(-1).cpu())
    return torch.cat(out).numpy()


@register_defense("safeclip")
class SafeClip(FineTuneDefense):
    Config = SafeClipConfig
    stage = "training_time"
    description = "unimodal warm-up, then a GMM on image-caption similarity splits safe (CLIP loss) from risky (unimodal) pairs"
    source = "Yang et al. ICML 2024 (arXiv 2310.05862); defaults from the official code"

    def run(self, context):
        import numpy as np

        from clipbench.training import clip_objective

        from .gmm import fit_gmm
        from .unimodal import unimodal_terms

        config = self.config
        eda, generator = self.eda(context), self.generator(context)

        def unimodal(batch):
            image_loss, text_loss = unimodal_terms(batch, eda, generator, config.augmentation)
            return 0.5 * (image_loss + text_loss)

        def train(data, objective, epochs, lr, seed_offset, phase):
            if epochs and len(data) >= config.batch_size:
                self.fit(context, objective, data=data, phase=phase, seed_offset=seed_offset, epochs=epochs, lr=lr)

        train(context.data, unimodal, config.unimodal_epochs, config.lr, 0, "unimodal warm-up")
        train(context.data, clip_objective, config.clip_warmup_epochs, config.clip_warmup_lr, 1, "clip warm-up")
        ratio = None
        history = []
        for epoch in range(config.epochs):
            similarity = pair_similarities(context)
            mixture = fit_gmm(similarity)
            if ratio is None:
                share = float((mixture.posterior_high(similarity) >= config.clean_threshold).mean())
                ratio = share if share > 0 else config.initial_ratio
            current = min(config.max_ratio, ratio + config.ratio_step * epoch)
            order = np.argsort(-similarity)
            cut = int(round(current * len(order)))
            safe, risky = np.sort(order[:cut]), np.sort(order[cut:])
            lr = config.lr * 0.5 * (1 + math.cos(math.pi * epoch / max(1, config.epochs)))
            train(context.data.subset(safe), clip_objective, 1, lr, 10 + epoch, f"epoch {epoch + 1} safe")
            train(context.data.subset(risky), unimodal, 1, lr, 1000 + epoch, f"epoch {epoch + 1} risky")
            poisoned_safe = int(np.isin(safe, context.data.trigger_rows).sum())
            history.append({"epoch": epoch + 1, "safe_ratio": round(current, 4), "safe": len(safe), "poisoned_in_safe": poisoned_safe})
        context.extras["safeclip_history"] = history
        return context.model
