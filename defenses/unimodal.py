"""Unimodal self-supervised losses shared by CleanCLIP, RoCLIP and SafeCLIP.

- image term: InfoNCE between each image and an augmented view of it, the other images of the
  batch as negatives (CleanCLIP's in-modal image loss);
- text term: InfoNCE between each caption and its EDA-augmented version.
Both use the model's CLIP temperature, as CleanCLIP's code does. The InfoNCE here is symmetric
(both directions averaged); CleanCLIP's code uses one direction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from clipbench.eda import Eda
    from clipbench.training import Batch


def info_nce(anchors: "torch.Tensor", positives: "torch.Tensor", scale: "torch.Tensor") -> "torch.Tensor":
    """Symmetric InfoNCE where row i of ``anchors`` matches row i of ``positives``."""
    import torch
    import torch.nn.functional as F

    logits = scale * anchors @ positives.t()
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def image_view(batch: "Batch", generator: "torch.Generator", policy: str = "simclr") -> "torch.Tensor":
    from clipbench.augment import augment

    return augment(batch.images, generator, policy)  # type: ignore[arg-type]


def unimodal_terms(batch: "Batch", eda: "Eda", generator: "torch.Generator", policy: str = "simclr",
                   image_features=None, text_features=None):
    """(image in-modal loss, text in-modal loss) of the batch; features are computed if not given."""
    scale = batch.logit_scale
    images = image_features if image_features is not None else batch.encode_images()
    texts = text_features if text_features is not None else batch.encode_texts()
    image_loss = info_nce(images, batch.encode_images(image_view(batch, generator, policy)), scale)
    text_loss = info_nce(texts, batch.encode_texts(eda.batch(batch.captions)), scale)
    return image_loss, text_loss
