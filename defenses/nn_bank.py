"""The nearest-neighbour memory bank of SafeCLIP's unimodal loss.

SafeCLIP's code trains risky pairs (and its warm-up) with NNCLR's loss (Dwibedi et al., ICCV
2021, arXiv 2104.14548), one bank per modality of the 256 most recent embeddings: the positive
of a view is the bank entry nearest to the other view of the same item, the other items of the
batch are the negatives. The bank is a module, so a resumed stage restores it with the model
(:meth:`clipbench.defenses.base.FineTuneDefense.stream`).
"""

from __future__ import annotations

import torch


class NearestNeighbourBank(torch.nn.Module):
    """A first-in, first-out bank of ``size`` L2-normalised embeddings of width ``dim``."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("entries", torch.zeros(size, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long))

    def nearest(self, features: torch.Tensor) -> torch.Tensor:
        """Each row's nearest bank entry (detached); the rows themselves while the bank is empty."""
        filled = int(self.filled)
        if filled == 0:
            return features
        bank = self.entries[:filled].to(features.dtype)
        return bank[(features.detach() @ bank.t()).argmax(dim=1)]

    @torch.no_grad()
    def push(self, features: torch.Tensor) -> None:
        """Append ``features`` (detached), overwriting the oldest entries once full."""
        size = len(self.entries)
        rows = features.detach().float()[-size:]
        slots = (int(self.cursor) + torch.arange(len(rows), device=self.entries.device)) % size
        self.entries[slots] = rows.to(self.entries.device)
        self.cursor.fill_((int(self.cursor) + len(rows)) % size)
        self.filled.fill_(min(size, int(self.filled) + len(rows)))


def nn_info_nce(bank: NearestNeighbourBank, view: torch.Tensor, other: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """NNCLR's symmetrised loss: InfoNCE between the bank neighbours of ``view`` and ``other``,
    and between those of ``other`` and ``view`` (row i with row i), averaged; the gradient flows
    through the views, never through bank entries. ``view`` then enters the bank."""
    from .unimodal import info_nce

    loss = 0.5 * (info_nce(bank.nearest(view), other, scale) + info_nce(bank.nearest(other), view, scale))
    bank.push(view)
    return loss
