"""Clean accuracy, attack success rate and robust accuracy from logits, with Wilson intervals.

Definitions (docs/protocol.md, "Protocol decisions" and "ASR definitions in the papers' code"):

- ``ca_top1`` / ``ca_top5``: zero-shot accuracy on clean images, all classes.
- ``asr``: among images whose true class is not the target, the fraction predicted as the target
  once triggered (BackdoorBench's convention).
- ``asr_all``: the same over every image, target-class images included (BadCLIP's and ABD's
  convention, used when comparing with their tables).
- ``ra``: robust accuracy, triggered non-target images predicted as their true class.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DEFINITIONS = {
    "ca_top1": "zero-shot top-1 accuracy on clean evaluation images (all classes)",
    "ca_top5": "zero-shot top-5 accuracy on clean evaluation images (all classes)",
    "asr": "fraction of triggered evaluation images whose true class is not the target that are classified as the target",
    "asr_all": "fraction of all triggered evaluation images (target-class images included) classified as the target "
               "(ABD/BadCLIP convention)",
    "ra": "robust accuracy: fraction of triggered evaluation images whose true class is not the target classified as their true class",
}


def wilson_interval(successes: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95% interval for a binomial proportion (Wilson, 1927)."""
    if total == 0:
        return (float("nan"), float("nan"))
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # The interval always contains p (it touches 0 at p = 0 and 1 at p = 1); rounding can put the
    # computed bound a hair inside, e.g. 0.9999999999999999 for 10/10, so clamp it to p as well.
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


@dataclass
class Proportion:
    """A measured proportion with its counts, interval and definition."""

    value: float
    successes: int
    total: int
    ci95: tuple[float, float]
    definition: str

    @classmethod
    def of(cls, successes: int, total: int, name: str) -> "Proportion":
        value = successes / total if total else float("nan")
        return cls(value, int(successes), int(total), wilson_interval(int(successes), int(total)), DEFINITIONS[name])

    def to_dict(self) -> dict:
        return asdict(self)


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per row: the true label is among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def backdoor_metrics(clean_logits: np.ndarray, triggered_logits: np.ndarray, labels: np.ndarray, target: int) -> dict[str, Proportion]:
    """CA (top-1, and top-5 when there are at least 5 classes), ASR, ASR-all and RA."""
    labels = np.asarray(labels)
    clean_pred = clean_logits.argmax(axis=1)
    triggered_pred = triggered_logits.argmax(axis=1)
    non_target = labels != target
    metrics = {"ca_top1": Proportion.of(int((clean_pred == labels).sum()), len(labels), "ca_top1")}
    if clean_logits.shape[1] >= 5:
        metrics["ca_top5"] = Proportion.of(int(topk_hits(clean_logits, labels, 5).sum()), len(labels), "ca_top5")
    metrics["asr"] = Proportion.of(int((triggered_pred[non_target] == target).sum()), int(non_target.sum()), "asr")
    metrics["asr_all"] = Proportion.of(int((triggered_pred == target).sum()), len(labels), "asr_all")
    metrics["ra"] = Proportion.of(int((triggered_pred[non_target] == labels[non_target]).sum()), int(non_target.sum()), "ra")
    return metrics
