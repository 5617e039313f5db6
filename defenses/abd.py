"""ABD — Adversarial Backdoor Defense (arXiv 2409.15968). A REIMPLEMENTATION: no official code
exists, so every choice the paper leaves open is made here and written down.

Method (paper, Fig. 2 and Sec. III): adversarial examples of a poisoned CLIP behave like its
backdoor samples in feature space. ABD crafts one universal adversarial patch against the
*poisoned* model, pastes it on clean fine-tuning images, augments their captions with EDA, and
fine-tunes, so the model unlearns the shortcut a patch-like trigger creates.

Choices made here (the paper does not specify them):

1. **Backdoor loss.** Our reading of the paper's InfoNCE-style backdoor loss: for each patched
   image, the positive is the (detached) centroid of the batch's patched-image embeddings and the
   negatives are the poisoned model's embeddings of the clean, unpatched images of the batch.
   Minimising it makes patched images collapse onto one point away from where clean images sit,
   which is how backdoor samples behave in a poisoned feature space. ``backdoor_loss=false``
   gives the plain UAP of Table III instead: maximise the distance between each patched image's
   embedding and its own clean embedding (minimise their cosine).
2. **Patch.** Square, ``patch_size`` 32 px at 224 (4.6 px at 32 px, rounded to 5), optimised
   directly with Adam (lr 0.05 in [0, 1] space through a sigmoid) for ``craft_steps`` steps on
   batches of clean defense images, each pasted at a random position on an augmented, brightened
   copy (brightness ×1.0–1.3), as the paper describes. The paper's generator/discriminator
   (AdvCLIP-style) is not implemented: the patch is optimised directly.
3. **Fine-tuning.** The preset's post-training schedule (paper default: CleanCLIP's recipe,
   :class:`~clipbench.defenses.base.FineTuneConfig`); ``patch_ratio`` (0.5) of
   each batch gets the patch at a random position, captions unchanged apart from EDA (0.1 rates);
   CLIP loss only. ``use_patch`` and ``use_eda`` switch the two ingredients off for the ablations
   of Table II (patch only: ``use_eda=false``; EDA only: ``use_patch=false``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
        require(0 <= self.eda_rate <= 1, f"defense.eda_rate must be in [0, 1], got {self.eda_rate}")


def paste(images, patch, generator):
    """Paste ``patch`` (float [0,1] or uint8, 3 x p x p) at a random position on every image (float [0,1])."""
    import torch

    n, _, size, _ = images.shape
    p = patch.shape[-1]
    ys = torch.randint(0, size - p + 1, (n,), generator=generator)
    xs = torch.randint(0, size - p + 1, (n,), generator=generator)
    mask = torch.zeros((n, 1, size, size), device=images.device)
    canvas = torch.zeros((n, 3, size, size), device=images.device)
    for i in range(n):
        y, x = int(ys[i]), int(xs[i])
        mask[i, :, y : y + p, x : x + p] = 1
        canvas[i, :, y : y + p, x : x + p] = patch
    return images * (1 - mask) + canvas * mask


def craft_patch(config: AbdConfig, context, generator):
    """Optimise the universal adversarial patch against the poisoned model (choices 1 and 2)."""
    model, pipeline, device = context.model.model, context.pipeline, context.device
    model.eval()
    trainable = [param for param in model.parameters() if param.requires_grad]
    for param in trainable:
        param.requires_grad_(False)
    try:
        return _optimise(config, context, generator, model, pipeline, device)
    finally:
        for param in trainable:
            param.requires_grad_(True)


def _optimise(config: AbdConfig, context, generator, model, pipeline, device):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from clipbench.attacks.base import scaled
    from clipbench.augment import simclr_view
    from clipbench.data.feed import feed

    size = pipeline.size
    p = min(size, scaled(config.patch_size, size, config.reference_resolution))
    logits = torch.zeros((3, p, p)).uniform_(-2, 2, generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=config.craft_lr)
    mean = torch.tensor(pipeline.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pipeline.std, device=device).view(1, 3, 1, 1)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    batch_size = min(config.craft_batch_size, len(context.pairs))
    batches = [rng.choice(len(context.pairs), size=batch_size, replace=False) for _ in range(config.craft_steps)]
    progress = tqdm(total=config.craft_steps, desc="ABD craft patch", unit="step", leave=False, mininterval=1.0)
    for rows, images in feed(context.images, batches):  # decoded ahead by workers for real-scale data
        progress.update(1)
        base = simclr_view(images, generator).float().to(device) / 255.0
        brightness = torch.empty((len(rows), 1, 1, 1)).uniform_(1.0, 1.3, generator=generator).to(device)
        base = (base * brightness).clamp(0, 1)
        patched = paste(base, torch.sigmoid(logits), generator)
        adv = F.normalize(model.encode_image((patched - mean) / std).float(), dim=-1)
        with torch.no_grad():
            own = F.normalize(model.encode_image((base - mean) / std).float(), dim=-1)
        if config.backdoor_loss:
            centroid = F.normalize(adv.mean(0, keepdim=True), dim=-1).detach()
            positive = (adv * centroid).sum(-1, keepdim=True)
            negatives = adv @ own.t()
            logits_nce = torch.cat([positive, negatives], dim=1) / config.temperature
            loss = F.cross_entropy(logits_nce, torch.zeros(len(rows), dtype=torch.long, device=device))
        else:
            loss = (adv * own).sum(-1).mean()
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
                    pasted = paste(images[chosen].float() / 255.0, patch.float() / 255.0, generator)
                    images[chosen] = (pasted * 255).round().to(torch.uint8)
            captions = eda.batch(batch.captions) if eda is not None else batch.captions
            return clip_loss(batch.encode_images(images), batch.encode_texts(captions), batch.logit_scale)

        self.fit(context, objective)
        return context.model
