"""RoCLIP (Yang et al., NeurIPS 2023, arXiv 2303.06854): a training-time defense.

Training starts from the clean model on the (poisoned) training pairs. On every ``match_every``-th
epoch (the 2nd, 4th, ..., as in the official code) each image is paired with the caption of a
large, varying pool whose embedding is nearest to the image's, instead of with its own caption;
the loss then takes that caption's stored, detached pool embedding, so the text tower gets no
gradient on matching epochs, as in the official code. The other epochs use the plain CLIP loss.
Images are augmented by the official code's strong SimCLR pipeline (``simclr_strong``:
:func:`clipbench.augment.strong_view`) and captions go through EDA. Defaults are the official
code's: pool 21,845, matching every 2nd epoch, 24 epochs, batch 512, lr 5e-5, weight decay 0.1,
AdamW betas 0.9/0.999, eps 1e-8, no gradient clipping (docs/protocol.md, "Training-time defense
hyper-parameters"). On a preset, the schedule fields are the preset's training-time schedule
unless the preset names RoCLIP among the methods that keep their paper's.

Departures from the official code: the pool is drawn from the training captions once per
matching epoch, each caption passed through EDA once, and embedded by the model at the start of
that epoch, where the official code keeps a FIFO of the embeddings of past batches' (EDA)
captions, refreshed every batch; at other resolutions than 224 px the augmentation's blur scales
with the image (:func:`clipbench.augment.strong_view`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipbench.config import require
from clipbench.registry import register_defense

from .base import FineTuneConfig, FineTuneDefense


@dataclass(frozen=True)
class RoClipConfig(FineTuneConfig):
    """RoCLIP's pool and schedule (official code defaults)."""

    epochs: int = 24
    batch_size: int = 512
    lr: float = 5e-5
    warmup_steps: int = 0
    pool_size: int = 21845
    match_every: int = 2
    augmentation: Literal["simclr_strong", "simclr", "autoaugment", "none"] = "simclr_strong"
    eda_rate: float = 0.1

    def validate(self) -> None:
        super().validate()
        require(self.pool_size > 0, f"defense.pool_size must be positive, got {self.pool_size}")
        require(self.match_every >= 1, f"defense.match_every must be >= 1, got {self.match_every}")
        require(0 <= self.eda_rate <= 1, f"defense.eda_rate must be in [0, 1], got {self.eda_rate}")


@register_defense("roclip")
class RoClip(FineTuneDefense):
    Config = RoClipConfig
    stage = "training_time"
    description = "train on poisoned data, pairing images with the nearest caption (detached) of a varying pool every 2nd epoch"
    source = "Yang et al. NeurIPS 2023 (arXiv 2303.06854); defaults from the official code"

    @classmethod
    def check_scenario(cls, config, scenario) -> None:
        require(config.pool_size <= scenario.victim_size,
                f"defense.pool_size ({config.pool_size}) is larger than the {scenario.victim_size} training pairs")

    def objective(self, context):
        import numpy as np
        import torch

        from clipbench.augment import augment
        from clipbench.training import clip_loss

        config = self.config
        captions = context.data.captions
        require(config.pool_size <= len(captions),
                f"defense.pool_size ({config.pool_size}) is larger than the {len(captions)} training captions")
        eda = self.eda(context) if config.eda_rate > 0 else None
        generator = self.generator(context)
        self._pool_rng = self.stream(context, "pool", np.random.default_rng(context.seed))
        self._pool: dict = {}
        pool = self._pool

        def objective(batch):
            images = batch.images if config.augmentation == "none" else augment(batch.images, generator, config.augmentation)
            image_features = batch.encode_images(images)
            if pool:  # a matching epoch: the nearest pool caption's stored embedding, detached
                with torch.no_grad():
                    nearest = (image_features.detach() @ pool["embeddings"].t()).argmax(dim=1)
                return clip_loss(image_features, pool["embeddings"][nearest], batch.logit_scale)
            texts = eda.batch(batch.captions) if eda is not None else batch.captions
            return clip_loss(image_features, batch.encode_texts(texts), batch.logit_scale)

        self._eda = eda
        return objective

    def on_epoch_start(self, context, epoch: int) -> None:
        """On every ``match_every``-th epoch, draw a new caption pool and embed it."""
        import torch
        import torch.nn.functional as F

        config, clip, pool = self.config, context.model, self._pool
        pool.clear()
        if (epoch + 1) % config.match_every != 0:
            return
        captions = context.data.captions
        texts = [captions[i] for i in self._pool_rng.choice(len(captions), size=config.pool_size, replace=False)]
        if self._eda is not None:  # the official bank holds embeddings of EDA-augmented captions
            texts = self._eda.batch(texts)
        clip.model.eval()
        with torch.no_grad():
            embeddings = torch.cat([
                F.normalize(clip.model.encode_text(clip.tokenize(texts[i : i + 1024]).to(context.device)).float(), dim=-1)
                for i in range(0, len(texts), 1024)
            ])
        pool.update(texts=texts, embeddings=embeddings)
