"""ABD — Adversarial Backdoor Defense (arXiv 2409.15968). A REIMPLEMENTATION: no official code
exists, so every choice the paper leaves open is made here and written down.

Method (paper, Fig. 2 and Sec. III): adversarial examples of a poisoned CLIP behave like its
backdoor samples in feature space. ABD crafts one universal adversarial patch from what the
*origin* (clean) encoder and the *poisoned* encoder make of patched clean images, pastes it on
clean fine-tuning images, augments their captions with EDA, and fine-tunes, so the model unlearns
the shortcut a patch-like trigger creates.

Choices made here (the paper does not specify them):

1. **Two encoders.** The origin encoder is the model the victim was fine-tuned from: the cached
   clean model (on ``tiny`` clipbench's own pretraining; on the paper setting the public
   pretrained model). Both are frozen while the patch is crafted.
2. **Backdoor loss** (``backdoor_loss=true``): InfoNCE at ``temperature`` (0.1). For each patched
   image, the positive is the detached centroid of the poisoned encoder's embeddings of the
   batch's patched images, and the negatives are the origin encoder's embeddings of the same
   patched images (``negatives="origin"``). Minimising it makes the poisoned model collapse
   patched images onto one point away from where a clean model puts them, which is how backdoor
   samples behave in a poisoned feature space. ``negatives="poisoned"`` keeps the earlier
   single-encoder variant: the negatives are the poisoned encoder's embeddings of the unpatched
   images.
3. **Plain UAP** (``backdoor_loss=false``, Table III): AdvCLIP's two contrastive terms against
   the poisoned model, maximised: InfoNCE between each patched image and its own unpatched image
   (weight ``image_weight``, 1) and between each patched image and its own caption (weight
   ``caption_weight``, 5; AdvCLIP weighs them 10 and 50), at ``temperature``.
4. **Patch source.** Optimised directly with Adam (``craft_lr`` 0.05 in [0, 1] space through a
   sigmoid), not by AdvCLIP's generator and discriminator: the patch is one universal tensor, so
   a generator of it from fixed noise is only a reparametrisation, and the discriminator's job,
   making the patch look natural, serves an attacker's stealth, which a defender pasting the
   patch on its own fine-tuning images does not need.
5. **Patch.** Square, ``patch_size`` 32 px at 224 (4.6 px at 32 px, rounded to 5), at the lower
   right corner (``position``, as Fig. 2 shows it; ``random`` pastes it anywhere), for crafting
   and fine-tuning alike; ``craft_steps`` (300) steps on batches of 64 clean defense images, each
   an augmented, brightened copy (x1.0-1.3), as the paper describes.
6. **Fine-tuning.** The preset's post-training schedule (paper default: CleanCLIP's recipe,
   :class:`~clipbench.defenses.base.FineTuneConfig`, optimizer included); ``patch_ratio`` (0.5) of
   each batch gets the patch, captions unchanged apart from EDA (0.1 rates); CLIP loss only.
   ``use_patch`` and ``use_eda`` switch the two ingredients off for the ablations of Table II
   (patch only: ``use_eda=false``; EDA only: ``use_patch=false``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from clipbench.config import require
from clipbench.registry import register_defense

from .base import FineTuneConfig, FineTuneDefense


@dataclass(frozen=True)
class AbdConfig(FineTuneConfig):
    """ABD's patch crafting and fine-tuning settings (see the module docstring for each choice)."""

    patch_size: int = 32
    reference_resolution: int = 224
    craft_steps: int = 300
    craft_batch_size: int = 64
    craft_lr: float = 0.05
    temperature: float = 0.1
    backdoor_loss: bool = True
    negatives: Literal["origin", "poisoned"] = "origin"
    image_weight: float = 1.0
    caption_weight: float = 5.0
    position: Literal["lower_right", "random"] = "lower_right"
    patch_ratio: float = 0.5
    use_patch: bool = True
    use_eda: bool = True
    eda_rate: float = 0.1

    def validate(self) -> None:
        super().validate()
        require(0 < self.patch_size <= self.reference_resolution,
                f"defense.patch_size must be in (0, {self.reference_resolution}], got {self.patch_size}")
        require(self.craft_steps >= 0, f"defense.craft_steps must be >= 0, got {self.craft_steps}")
        require(self.craft_batch_size >= 2, f"defense.craft_batch_size must be >= 2, got {self.craft_batch_size}")
        require(self.craft_lr > 0, f"defense.craft_lr must be positive, got {self.craft_lr}")
        require(self.temperature > 0, f"defense.temperature must be positive, got {self.temperature}")
        require(0 <= self.patch_ratio <= 1, f"defense.patch_ratio must be in [0, 1], got {self.patch_ratio}")
        require(self.image_weight >= 0 and self.caption_weight >= 0, "defense.image_weight and caption_weight must be >= 0")
        require(0 <= self.eda_rate <= 1, f"defense.eda_rate must be in [0, 1], got {self.eda_rate}")


def paste(images, patch, generator, position: str = "random"):
    """Paste ``patch`` (float [0,1] or uint8, 3 x p x p) on every image (float [0,1]): at the
    lower right corner, or at a random position per image drawn from ``generator``."""
    import torch

    n, _, size, _ = images.shape
    p = patch.shape[-1]
    if position == "lower_right":
        out = images.clone()
        out[:, :, size - p :, size - p :] = patch.to(images.dtype)
        return out
    ys = torch.randint(0, size - p + 1, (n,), generator=generator)
    xs = torch.randint(0, size - p + 1, (n,), generator=generator)
    mask = torch.zeros((n, 1, size, size), device=images.device)
    canvas = torch.zeros((n, 3, size, size), device=images.device)
    for i in range(n):
        y, x = int(ys[i]), int(xs[i])
        mask[i, :, y : y + p, x : x + p] = 1
        canvas[i, :, y : y + p, x : x + p] = patch
    return images * (1 - mask) + canvas * mask


def craft_loss(config: AbdConfig, adv, own, origin_adv=None, caption=None):
    """The crafting objective on one batch of L2-normalised embeddings (choices 2 and 3): ``adv``
    the poisoned encoder's of the patched images, ``own`` its of the unpatched images,
    ``origin_adv`` the origin encoder's of the patched images, ``caption`` the poisoned text
    encoder's of the images' captions."""
    import torch
    import torch.nn.functional as F

    from .unimodal import info_nce

    if config.backdoor_loss:
        centroid = F.normalize(adv.mean(0, keepdim=True), dim=-1).detach()
        positive = (adv * centroid).sum(-1, keepdim=True)
        negatives = adv @ (origin_adv if config.negatives == "origin" else own).t()
        logits = torch.cat([positive, negatives], dim=1) / config.temperature
        return F.cross_entropy(logits, torch.zeros(len(adv), dtype=torch.long, device=adv.device))
    scale = torch.tensor(1.0 / config.temperature, device=adv.device)
    return -(config.image_weight * info_nce(adv, own, scale) + config.caption_weight * info_nce(adv, caption, scale))


def craft_patch(config: AbdConfig, context, generator):
    """Optimise the universal adversarial patch against the frozen poisoned (and origin) encoders."""
    encoders = [context.model.model] + ([context.origin.model] if context.origin is not None else [])
    if config.backdoor_loss and config.negatives == "origin" and context.origin is None:
        from clipbench.errors import ClipbenchError

        raise ClipbenchError("defense abd: negatives=origin needs the origin (clean) model, which this run did not provide")
    trainable = [param for model in encoders for param in model.parameters() if param.requires_grad]
    for model in encoders:
        model.eval()
    for param in trainable:
        param.requires_grad_(False)
    try:
        return _optimise(config, context, generator)
    finally:
        for param in trainable:
            param.requires_grad_(True)


def _optimise(config: AbdConfig, context, generator):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from clipbench.attacks.base import scaled
    from clipbench.augment import simclr_view
    from clipbench.data.feed import feed
    from clipbench.progress import progress as progress_bar

    model, pipeline, device = context.model.model, context.pipeline, context.device
    size = pipeline.size
    p = min(size, scaled(config.patch_size, size, config.reference_resolution))
    logits = torch.zeros((3, p, p)).uniform_(-2, 2, generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=config.craft_lr)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    batch_size = min(config.craft_batch_size, len(context.pairs))
    batches = [rng.choice(len(context.pairs), size=batch_size, replace=False) for _ in range(config.craft_steps)]
    uses_origin = config.backdoor_loss and config.negatives == "origin"

    def embed(encoder, pixels):
        return F.normalize(encoder.encode_image(pipeline.normalize(pixels * 255.0)).float(), dim=-1)

    progress = progress_bar(total=config.craft_steps, desc="ABD craft patch", unit="step", leave=False, mininterval=1.0)
    for rows, images in feed(context.images, batches):  # decoded ahead by workers for real-scale data
        progress.update(1)
        base = simclr_view(images, generator).float().to(device) / 255.0
        brightness = torch.empty((len(rows), 1, 1, 1)).uniform_(1.0, 1.3, generator=generator).to(device)
        base = (base * brightness).clamp(0, 1)
        patched = paste(base, torch.sigmoid(logits), generator, config.position)
        adv = embed(model, patched)
        with torch.no_grad():
            own = embed(model, base)
            caption = None
            if not config.backdoor_loss:
                tokens = context.model.tokenize([context.data.captions[int(i)] for i in rows]).to(device)
                caption = F.normalize(model.encode_text(tokens).float(), dim=-1)
        origin_adv = embed(context.origin.model, patched) if uses_origin else None
        loss = craft_loss(config, adv, own, origin_adv, caption)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    progress.close()
    return (torch.sigmoid(logits.detach()).cpu() * 255).round().to(torch.uint8)


@register_defense("abd")
class Abd(FineTuneDefense):
    Config = AbdConfig
    stage = "post_training"
    provenance = "reimplementation"
    needs_origin_model = True
    description = "fine-tune on clean images carrying a crafted universal adversarial patch, EDA captions"
    source = "ABD (arXiv 2409.15968); reimplemented, no official code"

    def run(self, context):
        import numpy as np
        import torch

        from clipbench.training import clip_loss

        self.require_data(context)
        config = self.config
        generator = self.generator(context)
        started = time.perf_counter()
        patch = craft_patch(config, context, generator) if config.use_patch else None
        context.extras["abd_patch"] = patch
        context.extras["abd_craft"] = {"steps": config.craft_steps if patch is not None else 0,
                                       "wall_s": round(time.perf_counter() - started, 3)}
        eda = self.eda(context) if config.use_eda else None
        rng = np.random.default_rng(context.seed)

        def objective(batch):
            images = batch.images
            if patch is not None and config.patch_ratio > 0:
                chosen = torch.as_tensor(rng.random(len(images)) < config.patch_ratio)
                if chosen.any():
                    images = images.clone()
                    pasted = paste(images[chosen].float() / 255.0, patch.float() / 255.0, generator, config.position)
                    images[chosen] = (pasted * 255).round().to(torch.uint8)
            captions = eda.batch(batch.captions) if eda is not None else batch.captions
            return clip_loss(batch.encode_images(images), batch.encode_texts(captions), batch.logit_scale)

        self.fit(context, objective)
        return context.model
