"""A picture of an attack's trigger: clean and triggered evaluation images side by side.

Rows: clean images (one per class), the same images triggered, and the change amplified so an
invisible trigger (WaNet, a faint blend) can be judged; a last panel shows the trigger pattern
itself where the attack has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .atomic import atomic_file


def amplified_difference(clean: torch.Tensor, triggered: torch.Tensor) -> np.ndarray:
    """``|triggered - clean|`` scaled so the largest change is white (H x W x 3, float in [0, 1])."""
    diff = (triggered.float() - clean.float()).abs()
    peak = diff.max()
    if peak > 0:
        diff = diff / peak
    return diff.permute(1, 2, 0).numpy()


def write_gallery(attack, images: torch.Tensor, ids: torch.Tensor, labels: np.ndarray, classnames: tuple[str, ...],
                  out: Path, title: str, trigger: Optional[torch.Tensor] = None) -> Path:
    """Render the gallery of ``images`` (uint8 N x 3 x S x S) under ``attack`` into ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    triggered = attack.apply(images, ids)
    columns = len(images) + (1 if trigger is not None else 0)
    figure, axes = plt.subplots(3, columns, figsize=(1.3 * columns, 4.4), squeeze=False)
    row_names = ("clean", "triggered", "change (amplified)")
    for i in range(len(images)):
        panels = (images[i].permute(1, 2, 0).numpy(), triggered[i].permute(1, 2, 0).numpy(),
                  amplified_difference(images[i], triggered[i]))
        for row, panel in enumerate(panels):
            axes[row][i].imshow(panel, interpolation="nearest")
        axes[0][i].set_title(classnames[int(labels[i])], fontsize=7)
    for row, name in enumerate(row_names):
        axes[row][0].set_ylabel(name, fontsize=7)
    if trigger is not None:
        axes[0][-1].imshow(trigger.permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[0][-1].set_title("trigger", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.axis("off")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_file(out) as tmp:
        figure.savefig(tmp, dpi=150)
    plt.close(figure)
    return out


def one_per_class(labels: np.ndarray, classes: int) -> np.ndarray:
    """Row index of the first image of each class present."""
    rows = [int(np.nonzero(labels == c)[0][0]) for c in range(classes) if (labels == c).any()]
    return np.asarray(rows, dtype=np.int64)
