"""BadCLIP (Liang et al., CVPR 2024, arXiv 2311.12075): a patch optimised against the clean model.

The patch is optimised at one position (the first image's offset): with ``location=random`` it is
pasted elsewhere at poisoning and evaluation time than where it was optimised. The text term and
the natural captions use the Fashion-MNIST class synonyms of :mod:`clipbench.data.captions` on
the Fashion-MNIST scenario; on caption-only data (CC3M) the target images are the rows whose
caption names the target and each class's text anchor is "a photo of a {name}.".

The patch is optimised so that patched images land near the target in the *clean* model's
embedding space, with the dual-embedding objective, each term weighted by a config field:

- ``text_weight``: image-text contrastive term, cross-entropy of the patched image's similarities
  to every class's caption embedding with the target as label (toward target captions);
- ``image_weight``: ``1 - cos`` between the patched image and the mean embedding of natural
  target-class images (toward natural target images);
- ``away_weight``: ``cos`` between the patched image and the same image without the patch (away
  from the clean image's own embedding).

Poisoned captions are natural captions naming the target: captions of the victim's training data
that name it, as BadCLIP's code draws them (on Fashion-MNIST, whose captions are generated, the
training templates filled with synonyms of the target class). Defaults follow docs/protocol.md (a 16 px patch at 224 px at the image
centre, Adam, 50 epochs on up to 10K images); the learning rate (0.01 on the patch in [0, 1]
space, parametrised through a sigmoid) and batch size (128) are choices where the paper is silent.
The optimised patch is quantised to uint8 once and stored losslessly (safetensors), so poisoning
and evaluation paste the very same pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from clipbench.config import require
from clipbench.data import captions as caption_lib
from clipbench.registry import register_attack

from .badnet import SquarePatch, paste_pattern
from .base import Attack


@dataclass(frozen=True)
class BadClipConfig:
    """Patch geometry, optimisation schedule and the weights of the three objective terms."""

    patch_size: int = 16  # BadCLIP: 16x16 at 224 px
    reference_resolution: int = 224
    location: Literal["center", "bottom_right", "random"] = "center"  # BadCLIP: image centre
    epochs: int = 50  # BadCLIP: 50 epochs of Adam
    max_images: int = 10000  # BadCLIP: 10K natural samples
    batch_size: int = 128
    lr: float = 0.01
    text_weight: float = 1.0
    image_weight: float = 1.0
    away_weight: float = 1.0

    def validate(self) -> None:
        require(self.patch_size > 0, f"attack.patch_size must be positive, got {self.patch_size}")
        require(self.patch_size <= self.reference_resolution,
                f"attack.patch_size ({self.patch_size}) is larger than the image ({self.reference_resolution} px)")
        require(self.epochs >= 0, f"attack.epochs must be >= 0, got {self.epochs}")
        require(self.max_images > 0 and self.batch_size > 0, "attack.max_images and attack.batch_size must be positive")
        require(self.lr > 0, f"attack.lr must be positive, got {self.lr}")
        for name in ("text_weight", "image_weight", "away_weight"):
            require(getattr(self, name) >= 0, f"attack.{name} must be >= 0, got {getattr(self, name)}")


@register_attack("badclip")
class BadClip(SquarePatch, Attack):
    Config = BadClipConfig
    needs_clean_model = True
    description = "patch optimised on the clean model toward target text and target images (dual-embedding)"
    source = "Liang et al. CVPR 2024 (arXiv 2311.12075)"

    def prepare(self, clean=None, context=None) -> None:
        import torch

        self.config.validate()
        p = self.patch
        generator = torch.Generator().manual_seed(self.seed)
        start = torch.rand((3, p, p), generator=generator)
        if clean is None or context is None or self.config.epochs == 0:
            self.state = {"pattern": (start * 255).round().to(torch.uint8)}
            return
        patch = optimise_patch(self, clean, context, start)
        self.state = {"pattern": (patch * 255).round().clamp(0, 255).to(torch.uint8)}

    def apply(self, images, ids):
        return paste_pattern(images, self.state["pattern"], self.offsets(ids, images.shape[-1]))

    def visible_trigger(self):
        return self.state.get("pattern")

    def poisoned_captions(self, language, count, rng):
        """Natural captions naming the target: captions of the training data that name it
        (BadCLIP's code), or on template-captioned data (Fashion-MNIST) the scenario's templates
        filled with the target's synonyms; see :meth:`clipbench.data.captions.PoisonCaptions.natural`."""
        return language.natural(count, rng)


def _labelled(context) -> bool:
    return bool(len(context.pairs.labels)) and int(np.min(context.pairs.labels)) >= 0


def _target_rows(context) -> np.ndarray:
    """Rows showing the target: by label, or (caption-only data such as CC3M) by a caption that
    names the target, as BadCLIP draws its natural target images from captions."""
    if _labelled(context):
        return np.asarray(context.pairs.labels) == context.target_index
    word = re.compile(rf"\b{re.escape(context.target_name.lower())}s?\b")
    return np.array([bool(word.search(caption.lower())) for caption in context.pairs.captions], dtype=bool)


def _class_captions(context) -> list[list[str]]:
    """Per zero-shot class, the captions whose mean embedding is the class's text anchor: the
    Fashion-MNIST training templates with synonyms, or "a photo of a {name}." for other data."""
    if tuple(context.classnames or caption_lib.ZERO_SHOT_CLASSNAMES) == caption_lib.ZERO_SHOT_CLASSNAMES:
        return [[t.format(w) for t in caption_lib.CAPTION_TEMPLATES for w in words] for words in caption_lib.SYNONYMS.values()]
    return [[f"a photo of a {name}."] for name in context.classnames]


def optimise_patch(attack: BadClip, clean, context, start):
    """Adam on the patch (through a sigmoid) against the clean model's frozen encoders."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from clipbench.data.feed import feed
    from clipbench.models import place

    config = attack.config
    model, pipeline, device = place(clean, context.device).model, context.pipeline, context.device
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    rng = np.random.default_rng(attack.seed)
    is_target = _target_rows(context)
    if not is_target.any():
        from clipbench.errors import ClipbenchError

        raise ClipbenchError(f"badclip: no image of the victim split shows the target {context.target_name!r} "
                             "(by label, or by a caption naming it); its natural target images need some")
    others = rng.permutation(np.nonzero(~is_target)[0])[: config.max_images]
    targets = np.nonzero(is_target)[0][: config.max_images]
    images = context.images
    with torch.no_grad():
        class_text = []
        for captions in _class_captions(context):
            class_text.append(F.normalize(model.encode_text(clean.tokenize(captions).to(device)), dim=-1).mean(0))
        class_text = F.normalize(torch.stack(class_text), dim=-1)
        target_image = torch.zeros(class_text.shape[1], device=device)
        for chunk in (np.array_split(targets, max(1, len(targets) // 256)) if len(targets) else []):
            target_image += F.normalize(model.encode_image(pipeline.normalize(images[chunk]).to(device)), dim=-1).sum(0)
        target_image = F.normalize(target_image, dim=0)
        scale = model.logit_scale.exp()
    logits_param = torch.logit(start.clamp(1e-3, 1 - 1e-3)).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([logits_param], lr=config.lr)
    p, size = attack.patch, attack.image_size
    mask = attack.footprint(torch.as_tensor(context.pairs.ids[others[:1]]), size)[0].float().to(device)
    y, x = [int(v) for v in torch.nonzero(mask[0])[0]]
    target = torch.full((config.batch_size,), context.target_index, device=device)
    steps = config.epochs * max(1, len(others) // config.batch_size)
    progress = tqdm(total=steps, desc="optimise BadCLIP patch", unit="step", leave=False, mininterval=1.0)
    for _epoch in range(config.epochs):
        order = rng.permutation(others)
        batches = [order[start_row : start_row + config.batch_size]
                   for start_row in range(0, max(1, len(order) - config.batch_size + 1), config.batch_size)]
        for rows, batch in feed(images, batches, device=device):  # decoded ahead by workers for real-scale data
            clean_float = batch.to(device, non_blocking=True).float() / 255.0  # uint8 crosses, a quarter of the bytes
            canvas = torch.zeros_like(clean_float[0])
            canvas[:, y : y + p, x : x + p] = torch.sigmoid(logits_param)
            patched = clean_float * (1 - mask) + canvas * mask
            mean = torch.tensor(pipeline.mean, device=device).view(1, 3, 1, 1)
            std = torch.tensor(pipeline.std, device=device).view(1, 3, 1, 1)
            embedding = F.normalize(model.encode_image((patched - mean) / std), dim=-1)
            with torch.no_grad():
                own = F.normalize(model.encode_image((clean_float - mean) / std), dim=-1)
            loss = (
                config.text_weight * F.cross_entropy(scale * embedding @ class_text.t(), target[: len(rows)])
                + config.image_weight * (1 - embedding @ target_image).mean()
                + config.away_weight * (embedding * own).sum(-1).mean()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    progress.close()
    return torch.sigmoid(logits_param.detach()).cpu()
