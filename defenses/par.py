"""PAR, Perturb and Recover (Singh, Croce and Hein, arXiv 2412.00727): a post-training defense.

The victim is fine-tuned on clean pairs with CLIP's loss *minus* a repulsion term that pushes its
image and text embeddings away from those of the frozen victim it starts from, the term switched
off once the embeddings are far enough away (the "perturb"), while the CLIP loss keeps the
pairs aligned (the "recover")::

    loss = CLIP(I, T) - w * (R(I, I0) + R(T, T0)),
    R(X, X0) = d if d <= tau else 0,    d = mean over the batch of ||x - x0||^2

with ``x`` the L2-normalised embeddings of the model being trained and ``x0`` the frozen victim's
of the same (augmented) images and captions; ``w = repulsion_weight`` (0.5) and ``tau`` (2.15).
:func:`repulsion` and :func:`par_loss` hold the term, so tests reach it directly.

What the official code does (github.com/nmndeep/PerturbAndRecover; file and line numbers at commit
a720440), and what clipbench does with each choice:

- **Distance**: the squared L2 distance summed over the embedding dimensions, not divided by it
  (``losses.py`` l. 100-112), on L2-normalised embeddings (l. 54-56 and 69), so it lies in
  [0, 4] and tau = 2.15 is on that squared scale. Same here.
- **Which embedding**: the output of ``model.visual`` (open_clip's visual tower, projection
  included) and of ``model.encode_text`` (projection included) (``train.py`` l. 358-363), i.e.
  the post-projection embeddings CLIP's loss also uses. Same here (``encode_image`` /
  ``encode_text`` of the open_clip module).
- **Averaging and where the threshold acts**: per batch, not per sample. ``compute_loss`` averages
  the per-sample distances over the (all-gathered, global) batch (``losses.py`` l. 59-72, 88-89,
  115-118, ``reduction='mean'``), and ``threshold_tensor`` (l. 9-27) replaces that batch mean by
  0 when it is strictly greater than tau, separately for the image and the text term (l. 88-89):
  one modality's term can be off while the other's is on. A term that is off carries no gradient.
  Same here; under several ranks the distance is averaged over the global batch
  (:func:`clipbench.distributed.gather`), as the code's all-gather does.
- **Weight**: ``lossclip - 0.5 * (img_loss + text_loss)`` (``losses.py`` l. 91): one weight on
  the sum of the two terms. ``repulsion_weight`` is that 0.5.
- **Frozen model**: a second copy of the poisoned checkpoint, in eval mode with
  ``requires_grad_(False)``, run under ``no_grad`` (``train.py`` l. 101-104, 118, 359-361). Here
  :meth:`Par.objective` deep-copies ``context.model`` (the victim as handed to the defense) and
  freezes it the same way; a resumed stage restores the trained weights after that copy is taken,
  so the copy stays the victim's.
- **Inputs**: both models see the same augmented image and the same caption; the un-augmented
  image is loaded but never trained on (``train.py`` l. 352-363, ``data.py`` l. 104-111). Same here.
- **Temperature**: the code passes ``logit_scale.exp().item()`` (``train.py`` l. 364), a number,
  so the temperature is not trained. Same here (the logit scale is detached).
- **Augmentation** (``augmentation="noise_erasing"``, the default): not AutoAugment. The code's
  ``image_augment.py`` (AutoAugment) was never imported and was removed as redundant (commit
  2b468f2); the transform the training data goes through is built in ``utils.load_clip_model``
  (``utils.py`` l. 186-199): open_clip's resize and centre crop, then with p 0.5 an
  additive ``clip(N(0, 0.2^2), 0, 1)`` noise (a non-negative, brightening noise; ``AddGaussianNoise``,
  l. 142-151) with the image clipped to [0, 1], the normalisation, then with p 0.5 a square of
  0.5-1% of the image's area set to 0 after normalisation, i.e. the normalisation mean colour
  (the code's own ``RandomErasing``, l. 27-128: ratio 1, value 0, ten tries, each keeping the side
  below the image size minus 4). :func:`clipbench.augment.noise_erasing_view` does this on the uint8 batch (the
  noised image is rounded back to uint8, a quantisation of at most half a grey level).
  ``augmentation="autoaugment"`` (torchvision's ImageNet AutoAugment, :mod:`clipbench.augment`),
  ``"simclr"`` or ``"none"`` select another view.
- **Optimizer**: AdamW betas (0.9, 0.98), eps 1e-8, weight decay 1e-4 (``train.py`` l. 59-62,
  140-146), no gradient clipping (the loop has none). The code exempts parameters with fewer than
  two dimensions and names containing bias, ln or bn from weight decay (l. 126-133); the shared
  loop exempts those with fewer than two dimensions and the logit scale, the same set on
  open_clip's models.
- **Schedule**: peak lr 3e-6 (``train.py`` l. 55), cosine to 1e-9 (l. 57, 241-248), 2 epochs of
  250K pairs (``trigger.sh`` l. 42-43; ``train.py``'s own default is 10 epochs), 512 pairs per GPU
  on 4 GPUs (``trigger.sh`` l. 12 and 42, ``train.py`` l. 54: per GPU), so a global batch of
  2,048. Its warm-up lasts ``warmup_epochs * epochs`` = 0.5 x 2 = 1 epoch, not half an epoch
  (``train.py`` l. 52 and 94), and runs *linearly down* from ``lr-start`` 3e-5 to the 3e-6 peak
  (l. 56; ``utils.cosine_scheduler``, l. 410-432). The shared loop warms up from 0, so clipbench
  keeps the length (122 steps: one epoch of 250K pairs at batch 2,048) and departs on the start.
  On a preset the schedule fields (epochs, batch_size, lr, warmup_steps, weight_decay, precision)
  are the preset's post-training schedule, weight decay included (0.1 on ``tiny`` and ``micro``).

Other departures: mixed precision is bf16 autocast on GPU (the code: fp16 AMP with a grad scaler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from clipbench.config import require
from clipbench.registry import register_defense

from .base import FineTuneConfig, FineTuneDefense

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ParConfig(FineTuneConfig):
    """PAR's repulsion term, augmentation and the official code's optimizer and schedule.

    Official code defaults (``train.py``/``trigger.sh`` of nmndeep/PerturbAndRecover): lr 3e-6
    peak, cosine, weight decay 1e-4, AdamW betas (0.9, 0.98), eps 1e-8, 2 epochs of 250K pairs,
    global batch 2,048 (512 on each of 4 GPUs), warm-up of 1 epoch (half the run, 122 steps here),
    repulsion weight 0.5 and tau 2.15 on the squared distance of normalised embeddings. The paper
    describes the augmentation as AutoAugment; the code trains with Gaussian noise and random
    erasing (``noise_erasing``; module docstring). A preset replaces the schedule fields (epochs,
    batch_size, lr, warmup_steps, weight_decay, precision) with its post-training schedule.
    """

    epochs: int = 2
    batch_size: int = 2048
    lr: float = 3e-6
    warmup_steps: int = 122
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    grad_clip: float = 0.0
    repulsion_weight: float = 0.5
    tau: float = 2.15
    augmentation: Literal["noise_erasing", "autoaugment", "simclr", "none"] = "noise_erasing"

    def validate(self) -> None:
        super().validate()
        require(self.repulsion_weight >= 0, f"defense.repulsion_weight must be >= 0, got {self.repulsion_weight}")
        require(self.tau > 0, f"defense.tau must be > 0, got {self.tau}")


def repulsion(current: "torch.Tensor", frozen: "torch.Tensor", tau: float) -> "torch.Tensor":
    """PAR's repulsion term of one modality: the batch mean of the squared L2 distances between
    rows of ``current`` and of ``frozen`` (summed over dimensions), or 0, with no gradient, when
    that mean exceeds ``tau`` (the official code's ``threshold_tensor``: strictly greater)."""
    import torch

    distance = (current - frozen).pow(2).sum(dim=-1).mean()
    return torch.where(distance > tau, torch.zeros_like(distance), distance)


def par_loss(images: "torch.Tensor", texts: "torch.Tensor", frozen_images: "torch.Tensor", frozen_texts: "torch.Tensor",
             logit_scale: "torch.Tensor", repulsion_weight: float, tau: float) -> "torch.Tensor":
    """CLIP's loss minus ``repulsion_weight`` times the image and text repulsion terms; the
    distances are averaged over the global batch under several ranks."""
    from clipbench.distributed import gather
    from clipbench.training import clip_loss

    terms = repulsion(gather(images), gather(frozen_images), tau) + repulsion(gather(texts), gather(frozen_texts), tau)
    return clip_loss(images, texts, logit_scale) - repulsion_weight * terms


@register_defense("par")
class Par(FineTuneDefense):
    Config = ParConfig
    stage = "post_training"
    description = "fine-tune on clean pairs with CLIP loss minus a thresholded repulsion from the frozen victim's embeddings"
    source = "PAR (arXiv 2412.00727); defaults from the official code"

    def objective(self, context):
        import copy
        import dataclasses

        import torch

        from clipbench.augment import augment
        from clipbench.models import place

        config = self.config
        generator = self.generator(context)
        frozen = dataclasses.replace(context.model, model=copy.deepcopy(context.model.model))
        place(frozen, context.device)
        frozen.model.eval()
        frozen.model.requires_grad_(False)

        def objective(batch):
            images = augment(batch.images, generator, config.augmentation, mean=batch.pipeline.mean)
            with torch.no_grad():
                reference = dataclasses.replace(batch, clip=frozen)
                frozen_images, frozen_texts = reference.encode_images(images), reference.encode_texts()
            return par_loss(batch.encode_images(images), batch.encode_texts(), frozen_images, frozen_texts,
                            batch.logit_scale.detach(), config.repulsion_weight, config.tau)

        return objective
