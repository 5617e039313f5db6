"""Label-consistent BadNet (Turner et al., 2019, arXiv 1912.02771): a clean-label attack.

The poisoned rows are images of the target class with their own captions; nothing about them is
mislabelled. Turner et al. make a clean-label trigger necessary to learn by first making those
images hard to classify from their content: each gets an adversarial perturbation, bounded in
L-infinity, against a surrogate model, and then the trigger. A victim that can no longer explain
the caption from the content learns the trigger instead.

In CLIP training a row's signal is the match between its image and its caption, so the
perturbation here lowers exactly that: projected gradient descent on the cosine similarity
between the clean model's embedding of the perturbed image and of its own caption (the attacker
knows the public model the victim is trained from, as BadCLIP's threat model also assumes). The
bound is Turner et al.'s 16/255 (their strongest L-infinity budget, 16 of 255 levels); the step
count and step size (20 steps of 2 levels, enough to reach the bound from zero) are clipbench's.
``epsilon=0`` gives the plain variant: the patch on target-class rows, no perturbation.

The perturbation is a poisoning device, not part of the trigger: evaluation pastes the patch
alone (:meth:`apply`), the victim's training sees perturbation and patch on the poisoned rows
(:meth:`training_trigger`). Perturbations are computed for every target-class image of the
victim split (row choice comes later and is seeded separately) and stored with the trigger as
integer offsets in 0-255 levels, so poisoning replays them exactly.

Departures from Turner et al.: their surrogate is a classifier and their loss its cross-entropy;
their trigger is a four-corner pattern with reduced amplitude, chosen to survive their
augmentation. clipbench keeps BadNet's patch (docs/protocol.md, "Trigger parameters").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipbench.config import require
from clipbench.registry import register_attack

from .badnet import BadNet, BadNetConfig


@dataclass(frozen=True)
class LabelConsistentConfig(BadNetConfig):
    """BadNet's patch plus the adversarial perturbation's L-infinity bound and PGD schedule (0-255 levels)."""

    epsilon: float = 16.0  # Turner et al.: 16/255, their strongest L-infinity bound
    pgd_steps: int = 20  # clipbench's choice: 20 steps of 2 levels reach the bound
    pgd_step: float = 2.0
    batch_size: int = 128

    def validate(self) -> None:
        super().validate()
        require(0 <= self.epsilon <= 127, f"attack.epsilon must be in [0, 127] levels, got {self.epsilon}")
        require(self.pgd_steps >= 0, f"attack.pgd_steps must be >= 0, got {self.pgd_steps}")
        require(self.pgd_step > 0, f"attack.pgd_step must be positive, got {self.pgd_step}")
        require(self.batch_size > 0, f"attack.batch_size must be positive, got {self.batch_size}")


@register_attack("label_consistent")
class LabelConsistentBadNet(BadNet):
    """BadNet's patch on adversarially perturbed target-class rows, captions kept (module docstring)."""

    Config = LabelConsistentConfig
    needs_clean_model = True
    description = "clean-label: target-class images made hard to match to their captions (PGD, 16/255), then BadNet's patch"
    source = "Turner et al. 2019 (arXiv 1912.02771); CleanCLIP code's label-consistent option"

    def prepare(self, clean=None, context=None) -> None:
        import torch

        super().prepare(clean, context)
        empty = {"perturbed_ids": torch.zeros(0, dtype=torch.int64), "perturbation": torch.zeros(0, dtype=torch.int8)}
        if clean is None or context is None or self.config.epsilon == 0 or self.config.pgd_steps == 0:
            self.state.update(empty)
            return
        rows = np.nonzero(np.asarray(context.pairs.labels) == context.target_index)[0]
        offsets = adversarial_offsets(self.config, clean, context, rows)
        self.state.update({"perturbed_ids": torch.as_tensor(context.pairs.ids[rows], dtype=torch.int64),
                           "perturbation": offsets})

    def perturb(self, images, ids):
        """``images`` with each stored perturbation added (rows without one are left as they are)."""
        import torch

        known = self.state.get("perturbed_ids")
        if known is None or not len(known):
            return images
        order = torch.argsort(known)
        position = torch.searchsorted(known[order], ids.to(known.device)).clamp(max=len(known) - 1)
        found = known[order][position] == ids.to(known.device)
        if not found.any():
            return images
        out = images.clone()
        offsets = self.state["perturbation"][order][position[found]].to(images.device, torch.int16)
        out[found.to(images.device)] = (images[found.to(images.device)].to(torch.int16) + offsets).clamp(0, 255).to(images.dtype)
        return out

    def training_trigger(self, manifest, pairs):
        """The poisoned rows get their perturbation, then the patch; evaluation uses the patch alone."""
        def transform(images, ids):
            return self.apply(self.perturb(images, ids), ids)

        return manifest.rows, transform

    def poison(self, pairs, count, target_index, language, rng, label_consistent=True):
        return super().poison(pairs, count, target_index, language, rng, label_consistent=True)


def adversarial_offsets(config: LabelConsistentConfig, clean, context, rows: np.ndarray):
    """PGD (sign steps, L-infinity projection, valid pixel range) lowering the clean model's
    image-caption cosine of ``rows``; returns int8 offsets ``len(rows) x 3 x S x S`` in 0-255 levels."""
    import torch
    import torch.nn.functional as F

    from clipbench.data.feed import feed
    from clipbench.models import place
    from clipbench.progress import progress

    from .badclip import _embed_captions

    model, pipeline, device = place(clean, context.device).model, context.pipeline, context.device
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    mean = torch.tensor(pipeline.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pipeline.std, device=device).view(1, 3, 1, 1)
    bound, step = config.epsilon / 255.0, config.pgd_step / 255.0
    batches = [rows[i : i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
    parts = []
    for batch_rows, batch in progress(feed(context.images, batches, device=device), total=len(batches),
                                  desc="label-consistent perturbations", unit="batch", leave=False):
        original = batch.to(device).float() / 255.0
        text = _embed_captions(clean, [context.pairs.captions[int(r)] for r in batch_rows], device)
        delta = torch.zeros_like(original)
        for _ in range(config.pgd_steps):
            delta.requires_grad_(True)
            image = F.normalize(model.encode_image(((original + delta) - mean) / std).float(), dim=-1)
            similarity = (image * text).sum()
            (grad,) = torch.autograd.grad(similarity, delta)
            with torch.no_grad():
                delta = (delta - step * grad.sign()).clamp(-bound, bound)
                delta = (original + delta).clamp(0, 1) - original
        perturbed = ((original + delta.detach()) * 255).round()
        parts.append((perturbed - (original * 255).round()).clamp(-127, 127).to(torch.int8).cpu())
    size = context.pipeline.size
    return torch.cat(parts) if parts else torch.zeros((0, 3, size, size), dtype=torch.int8)
