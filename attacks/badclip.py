"""BadCLIP (Liang et al., CVPR 2024, arXiv 2311.12075): a patch optimised against the clean model.

The patch is optimised, as BadCLIP's released code does (``src/embeding_optimize_patch.py``), on
images that do not show the target, each paired with a natural caption that names it (captions
of the rows that show the target: by label, or on caption-only data such as CC3M by a caption
naming the target), against the frozen *clean* model. Each term has its weight in the config:

- ``caption_weight`` (1): CLIP's symmetric in-batch InfoNCE between the patched images and their
  natural target captions;
- ``triplet_weight`` (500, the released patch's run) with ``triplet_margin`` (1): the Euclidean
  triplet hinge with the patched image as anchor, the embedding of a natural target image as
  positive and the image's own unpatched embedding as negative; it stops pulling once the margin
  is met;
- ``mse_weight`` (0; the code's variant without negatives weighs it 1000): the mean squared
  difference between the patched image's and a natural target image's embeddings.

Each step pairs the batch with target-image embeddings drawn at random from the target rows (the
code draws 64). Defaults are the code's: a 16 px patch at 224 px at the image centre, initialised
N(0.5, 0.25) clipped to [0, 1], Adam lr 1e-3 on the raw values (clipped to [0, 1] when pasted),
batch 64, 50 epochs over up to 10K images. The patch is optimised at one position (the first
image's offset): with ``location=random`` it is pasted elsewhere at poisoning and evaluation time
than where it was optimised. The optimised patch is quantised to uint8 once and stored
losslessly (safetensors), so poisoning and evaluation paste the very same pixels.

Poisoned captions are natural captions naming the target: captions of the victim's training data
that name it, as BadCLIP's code draws them (on Fashion-MNIST, whose captions are generated, the
training templates filled with synonyms of the target class).

Departures from the code: its released run also replaces a caption by its EDA version with
probability 0.1 and an image by an augmented view with probability 0.5 during the patch search;
clipbench optimises on the plain pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from clipbench.config import require
from clipbench.registry import register_attack

from .badnet import SquarePatch, paste_pattern
from .base import Attack

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BadClipConfig:
    """Patch geometry, the patch search's schedule and the weights of its loss terms (BadCLIP's code)."""

    patch_size: int = 16  # BadCLIP: 16x16 at 224 px
    reference_resolution: int = 224
    location: Literal["center", "bottom_right", "random"] = "center"  # BadCLIP: image centre
    epochs: int = 50  # BadCLIP: 50 epochs of Adam
    max_images: int = 10000  # BadCLIP: 10K natural samples
    batch_size: int = 64  # BadCLIP's released run: bs64
    lr: float = 1e-3  # torch's Adam default, which the code uses
    caption_weight: float = 1.0
    triplet_weight: float = 500.0
    triplet_margin: float = 1.0
    mse_weight: float = 0.0

    def validate(self) -> None:
        require(self.patch_size > 0, f"attack.patch_size must be positive, got {self.patch_size}")
        require(self.patch_size <= self.reference_resolution,
                f"attack.patch_size ({self.patch_size}) is larger than the image ({self.reference_resolution} px)")
        require(self.epochs >= 0, f"attack.epochs must be >= 0, got {self.epochs}")
        require(self.max_images > 0 and self.batch_size > 1, "attack.max_images must be positive and attack.batch_size at least 2")
        require(self.lr > 0, f"attack.lr must be positive, got {self.lr}")
        for name in ("caption_weight", "triplet_weight", "triplet_margin", "mse_weight"):
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
        start = (0.5 + 0.25 * torch.randn((3, p, p), generator=generator)).clamp(0, 1)  # the code's initialisation
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


def _embed_rows(model, pipeline, images, rows: np.ndarray, device) -> "torch.Tensor":
    """L2-normalised embeddings of the images in ``rows`` under ``model`` (no gradient)."""
    import torch
    import torch.nn.functional as F

    from clipbench.data.feed import feed

    batches = np.array_split(rows, max(1, len(rows) // 256)) if len(rows) else []
    with torch.no_grad():
        parts = [F.normalize(model.encode_image(pipeline.pixels(batch, device)).float(), dim=-1)
                 for _, batch in feed(images, batches, device=device)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _embed_captions(clean, captions: list[str], device) -> "torch.Tensor":
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return torch.cat([F.normalize(clean.model.encode_text(clean.tokenize(captions[i : i + 512]).to(device)).float(), dim=-1)
                          for i in range(0, len(captions), 512)])


def patch_loss(config: BadClipConfig, patched, captions, positives, own, scale):
    """The code's objective on one batch of L2-normalised embeddings: patched images, their natural
    target captions, natural target images (positives) and the images' own unpatched embeddings."""
    import torch
    import torch.nn.functional as F

    labels = torch.arange(len(patched), device=patched.device)
    logits = scale * patched @ captions.t()
    loss = config.caption_weight * 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    if config.triplet_weight:
        loss = loss + config.triplet_weight * F.triplet_margin_loss(patched, positives, own, margin=config.triplet_margin)
    if config.mse_weight:
        loss = loss + config.mse_weight * F.mse_loss(patched, positives)
    return loss


def optimise_patch(attack: BadClip, clean, context, start):
    """Adam on the patch against the clean model's frozen encoders (module docstring)."""
    import torch

    from clipbench.data.feed import feed
    from clipbench.models import place
    from clipbench.progress import progress as progress_bar

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
    positives = _embed_rows(model, pipeline, images, targets, device)
    captions = _embed_captions(clean, [context.pairs.captions[i] for i in targets], device)
    scale = model.logit_scale.exp().float()
    patch = start.clone().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([patch], lr=config.lr)
    p, size = attack.patch, attack.image_size
    mask = attack.footprint(torch.as_tensor(context.pairs.ids[others[:1]]), size)[0].float().to(device)
    y, x = [int(v) for v in torch.nonzero(mask[0])[0]]
    mean = torch.tensor(pipeline.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pipeline.std, device=device).view(1, 3, 1, 1)
    steps = config.epochs * max(1, len(others) // config.batch_size)
    progress = progress_bar(total=steps, desc="optimise BadCLIP patch", unit="step", leave=False, mininterval=1.0)
    for _epoch in range(config.epochs):
        order = rng.permutation(others)
        batches = [order[start_row : start_row + config.batch_size]
                   for start_row in range(0, max(1, len(order) - config.batch_size + 1), config.batch_size)]
        for rows, batch in feed(images, batches, device=device):  # decoded ahead by workers for real-scale data
            clean_float = batch.to(device, non_blocking=True).float() / 255.0  # uint8 crosses, a quarter of the bytes
            canvas = torch.zeros_like(clean_float[0])
            canvas[:, y : y + p, x : x + p] = patch.clamp(0, 1)
            patched = clean_float * (1 - mask) + canvas * mask
            embedding = torch.nn.functional.normalize(model.encode_image((patched - mean) / std).float(), dim=-1)
            with torch.no_grad():
                own = torch.nn.functional.normalize(model.encode_image((clean_float - mean) / std).float(), dim=-1)
            pick = torch.as_tensor(rng.integers(0, len(targets), size=len(rows)), device=device)
            loss = patch_loss(config, embedding, captions[pick], positives[pick], own, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    progress.close()
    return patch.detach().clamp(0, 1).cpu()
