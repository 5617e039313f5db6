"""SafeCLIP (Yang et al., ICML 2024, arXiv 2310.05862): a training-time defense.

From the clean model on the (poisoned) training pairs, one training run of ``epochs`` epochs
(warm-ups included, as in the official code) with one AdamW and one cosine schedule:

1. unimodal warm-up, the first ``unimodal_epochs``: NNCLR losses only (:mod:`.nn_bank`), image
   against image and caption against caption, each view's positive the nearest entry of a bank
   of the last ``bank_size`` embeddings of its modality; this separates the modalities' clusters
   without learning poisoned image-text links;
2. CLIP warm-up, the next ``clip_warmup_epochs``: the CLIP loss at a fixed ``clip_warmup_lr``;
3. then every epoch: the cosine similarity of every pair, on an augmented view of its image;
   a two-component Gaussian mixture on those similarities; pairs in the top ``ratio`` by
   similarity are safe (CLIP loss), the rest risky (NNCLR losses). The first ratio is the
   fraction with p(clean) >= ``clean_threshold`` under the mixture (``initial_ratio`` when that is
   0); it grows by ``ratio_step`` per epoch up to ``max_ratio``.

Every step sees two augmented views of each image (the code's strong SimCLR pipeline,
``simclr_strong``) and two of each caption (the caption and its EDA version); the CLIP loss is
taken on crossed views (image view 1 with caption view 2, and view 2 with caption view 1,
averaged). Defaults are the official code's (docs/protocol.md, "Training-time defense
hyper-parameters"): 32 epochs, 5 unimodal and 1 CLIP warm-up epoch at lr 5e-6, p >= 0.9,
fallback ratio 0.15, +0.01 per epoch, cap 0.85, lr 5e-4, batch 128, banks of 256, AdamW betas
0.9/0.999, eps 1e-8, no gradient clipping.

Departures from the official code: safe and risky pairs share batches (the split masks each
batch's rows: the CLIP loss over its safe rows, the NNCLR loss over its risky rows, summed), where
the code iterates the two sets with their own loaders; the mixture is fitted on the similarities
of an augmented image view with the unaugmented caption; the mixture is refitted every epoch but
only its first fit sets the initial ratio; at other resolutions than 224 px the augmentation's
blur scales with the image (:func:`clipbench.augment.strong_view`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Optional

from clipbench.config import require
from clipbench.registry import register_defense

from .base import FineTuneConfig, FineTuneDefense

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class SafeClipConfig(FineTuneConfig):
    """SafeCLIP's warm-ups, mixture split, banks and schedule (official code defaults)."""

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
    bank_size: int = 256
    augmentation: Literal["simclr_strong", "simclr", "autoaugment"] = "simclr_strong"
    eda_rate: float = 0.1

    def validate(self) -> None:
        super().validate()
        for name in ("unimodal_epochs", "clip_warmup_epochs"):
            require(getattr(self, name) >= 0, f"defense.{name} must be >= 0, got {getattr(self, name)}")
        require(self.epochs > self.unimodal_epochs + self.clip_warmup_epochs,
                f"defense.epochs ({self.epochs}) counts the warm-ups: it must exceed unimodal_epochs + clip_warmup_epochs "
                f"({self.unimodal_epochs} + {self.clip_warmup_epochs})")
        require(self.clip_warmup_lr > 0, f"defense.clip_warmup_lr must be positive, got {self.clip_warmup_lr}")
        require(self.bank_size >= 1, f"defense.bank_size must be >= 1, got {self.bank_size}")
        for name in ("clean_threshold", "initial_ratio", "ratio_step", "max_ratio", "eda_rate"):
            value = getattr(self, name)
            require(0 <= value <= 1, f"defense.{name} must be in [0, 1], got {value}")


@dataclass
class SplitState:
    """Where SafeCLIP's split stands: the first ratio and the per-epoch history (saved and
    restored with the model when a stage resumes)."""

    ratio: Optional[float] = None
    history: list = field(default_factory=list)

    def state_dict(self) -> dict:
        return {"ratio": self.ratio, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.ratio, self.history = state["ratio"], list(state["history"])


def pair_similarities(context, generator: "torch.Generator", policy: str) -> "np.ndarray":
    """Cosine similarity of every (possibly triggered) image, in an augmented view, with its
    caption under the current model; images decoded ahead by the feed."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from clipbench.augment import augment
    from clipbench.data.feed import feed
    from clipbench.training import TriggerRows

    clip, pipeline, data = context.model, context.pipeline, context.data
    captions = data.captions
    transform = TriggerRows(len(captions), data.trigger_rows, data.trigger, torch.as_tensor(data.pairs.ids))
    batches = [np.arange(start, min(start + 512, len(captions))) for start in range(0, len(captions), 512)]
    clip.model.eval()
    out = []
    with torch.no_grad():
        for rows, images in feed(data.images, batches, transform):
            pixels = pipeline.pixels(augment(images, generator, policy), context.device)
            image = F.normalize(clip.model.encode_image(pixels).float(), dim=-1)
            text = F.normalize(clip.model.encode_text(clip.tokenize([captions[i] for i in rows]).to(context.device)).float(), dim=-1)
            out.append((image * text).sum(-1).cpu())
    return torch.cat(out).numpy()


def masked_clip_loss(images: "torch.Tensor", texts: "torch.Tensor", scale: "torch.Tensor", keep: "torch.Tensor") -> "torch.Tensor":
    """CLIP's loss over the rows where ``keep`` holds, across ranks (the batch gathered first)."""
    import torch
    import torch.nn.functional as F

    from clipbench.distributed import gather

    images, texts, keep = gather(images), gather(texts), gather(keep.float()) > 0.5
    if int(keep.sum()) < 2:  # no pair to contrast (the same answer on every rank: the mask is gathered)
        return images.sum() * 0.0
    logits = scale * images[keep] @ texts[keep].t()
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


@register_defense("safeclip")
class SafeClip(FineTuneDefense):
    Config = SafeClipConfig
    stage = "training_time"
    description = "unimodal warm-up, then a GMM on image-caption similarity splits safe (CLIP loss) from risky (unimodal) pairs"
    source = "Yang et al. ICML 2024 (arXiv 2310.05862); defaults from the official code"

    def run(self, context):
        import numpy as np
        import torch

        from clipbench.augment import augment

        from .nn_bank import NearestNeighbourBank, nn_info_nce

        config, clip = self.config, context.model
        warmups = config.unimodal_epochs + config.clip_warmup_epochs
        eda, generator = self.eda(context), self.generator(context)
        split_view = self.stream(context, "split-view", torch.Generator().manual_seed(context.seed + 1))
        with torch.no_grad():
            width = clip.model.encode_text(clip.tokenize([""]).to(context.device)).shape[-1]
        banks = {m: self.stream(context, f"bank-{m}", NearestNeighbourBank(config.bank_size, width).to(context.device))
                 for m in ("image", "text")}
        split = self.stream(context, "split", SplitState())
        safe = np.zeros(len(context.data), dtype=bool)
        phase = {"name": "unimodal"}

        def on_epoch_start(epoch: int) -> None:
            if epoch < config.unimodal_epochs:
                phase["name"] = "unimodal"
            elif epoch < warmups:
                phase["name"] = "clip"
            else:
                phase["name"] = "split"
                safe[:] = self.split(context, split, epoch - warmups, pair_similarities(context, split_view, config.augmentation))

        def objective(batch):
            image_views = [batch.encode_images(augment(batch.images, generator, config.augmentation)) for _ in range(2)]
            text_views = [batch.encode_texts(batch.captions), batch.encode_texts(eda.batch(batch.captions))]
            scale = batch.logit_scale
            keep = torch.as_tensor({"unimodal": np.zeros(len(batch.rows), bool), "clip": np.ones(len(batch.rows), bool),
                                    "split": safe[batch.rows]}[phase["name"]], device=image_views[0].device)
            loss = scale.new_zeros(())
            if phase["name"] != "unimodal":
                loss = loss + 0.5 * (masked_clip_loss(image_views[0], text_views[1], scale, keep)
                                     + masked_clip_loss(image_views[1], text_views[0], scale, keep))
            risky = ~keep
            if int(risky.sum()) >= 2:
                loss = loss + 0.5 * (nn_info_nce(banks["image"], image_views[0][risky], image_views[1][risky], scale)
                                     + nn_info_nce(banks["text"], text_views[0][risky], text_views[1][risky], scale))
            return loss

        self.fit(context, objective, on_epoch_start=on_epoch_start,
                 epoch_lr=lambda epoch: config.clip_warmup_lr if config.unimodal_epochs <= epoch < warmups else None)
        context.extras["safeclip_history"] = list(split.history)
        return context.model

    def split(self, context, state: SplitState, epoch: int, similarity: "np.ndarray") -> "np.ndarray":
        """The safe rows of split epoch ``epoch`` (0 = the first after the warm-ups), from the mixture."""
        import numpy as np

        from .gmm import fit_gmm

        config = self.config
        mixture = fit_gmm(similarity)
        if state.ratio is None:
            share = float((mixture.posterior_high(similarity) >= config.clean_threshold).mean())
            state.ratio = share if share > 0 else config.initial_ratio
        current = min(config.max_ratio, state.ratio + config.ratio_step * epoch)
        order = np.argsort(-similarity)
        safe = np.zeros(len(similarity), dtype=bool)
        safe[order[: int(round(current * len(order)))]] = True
        if len(state.history) <= epoch:  # a resumed run recomputes the epoch it resumes at
            state.history.append({"epoch": epoch + 1, "safe_ratio": round(current, 4), "safe": int(safe.sum()),
                                  "poisoned_in_safe": int(safe[context.data.trigger_rows].sum())})
        return safe
