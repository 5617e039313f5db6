"""Detection metrics, computed by the harness from a detector's scores and the ground truth it
alone holds (higher score = more suspicious; label 1 = poisoned).

- ``auroc``: area under the ROC curve, the probability that a random poisoned item scores above
  a random clean one, ties counting one half (the Mann-Whitney statistic; Huang et al., ICLR
  2025, report it);
- ``auprc``: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds
  in decreasing order (scikit-learn's ``average_precision_score``; its chance level is the
  poisoned fraction);
- ``tpr_at_fpr_1`` / ``tpr_at_fpr_5``: the largest true-positive rate over thresholds whose
  false-positive rate is at most 1% / 5% (no interpolation between ROC points).

Intervals: 95% percentile bootstrap, 1,000 resamples drawn separately from the poisoned and the
clean items (so every resample keeps both counts), from a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ClipbenchError

DEFINITIONS = {
    "auroc": "area under the ROC curve: probability that a poisoned item scores above a clean one (ties 1/2)",
    "auprc": "average precision over the distinct score thresholds (chance level: the poisoned fraction)",
    "tpr_at_fpr_1": "largest true-positive rate at a threshold whose false-positive rate is at most 1%",
    "tpr_at_fpr_5": "largest true-positive rate at a threshold whose false-positive rate is at most 5%",
}
#: Bootstrap resamples and percentile interval of every detection metric.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ClipbenchError(f"{scores.size} scores for {labels.size} items")
    if not np.isfinite(scores).all():
        raise ClipbenchError(f"{int((~np.isfinite(scores)).sum())} of {scores.size} scores are not finite")
    if labels.all() or not labels.any():
        raise ClipbenchError("detection metrics need both poisoned and clean items")
    return scores, labels


def _midranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    first = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = ((starts + ends + 1) / 2.0)[group]
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic over positives x negatives)."""
    scores, labels = _check(scores, labels)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    rank_sum = _midranks(scores)[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positive counts at each distinct threshold, from the highest score down."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    true_positives = np.cumsum(sorted_labels)[last]
    false_positives = np.cumsum(~sorted_labels)[last]
    return true_positives, false_positives


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision (scikit-learn's definition, no interpolation)."""
    scores, labels = _check(scores, labels)
    true_positives, false_positives = _roc_points(scores, labels)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """The largest true-positive rate at a threshold whose false-positive rate is at most ``fpr``."""
    scores, labels = _check(scores, labels)
    true_positives, false_positives = _roc_points(scores, labels)
    allowed = false_positives / (~labels).sum() <= fpr
    return float(true_positives[allowed].max() / labels.sum()) if allowed.any() else 0.0


def roc_on_grid(scores: np.ndarray, labels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The ROC curve sampled at the false-positive rates of ``grid``: at each, the largest
    true-positive rate whose false-positive rate is at most it (what :func:`tpr_at_fpr` gives)."""
    scores, labels = _check(scores, labels)
    true_positives, false_positives = _roc_points(scores, labels)
    index = np.searchsorted(false_positives / (~labels).sum(), np.asarray(grid, dtype=np.float64), side="right") - 1
    return np.where(index >= 0, true_positives[np.maximum(index, 0)] / labels.sum(), 0.0)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": auroc,
    "auprc": auprc,
    "tpr_at_fpr_1": lambda s, y: tpr_at_fpr(s, y, 0.01),
    "tpr_at_fpr_5": lambda s, y: tpr_at_fpr(s, y, 0.05),
}


@dataclass(frozen=True)
class DetectionMetric:
    """One metric's value with its bootstrap interval, counts and definition."""

    name: str
    value: float
    ci95: tuple[float, float]
    poisoned: int
    clean: int

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95": list(self.ci95), "poisoned": self.poisoned, "clean": self.clean,
                "definition": DEFINITIONS[self.name],
                "interval": f"95% percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples stratified by label"}


def detection_metrics(scores: np.ndarray, labels: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> dict[str, DetectionMetric]:
    """Every metric of :data:`METRICS` with its stratified bootstrap interval."""
    scores, labels = _check(scores, labels)
    positive, negative = np.flatnonzero(labels), np.flatnonzero(~labels)
    rng = np.random.default_rng(seed)
    draws = [np.r_[rng.choice(positive, positive.size), rng.choice(negative, negative.size)] for _ in range(resamples)]
    out = {}
    for name, metric in METRICS.items():
        boot = np.array([metric(scores[rows], labels[rows]) for rows in draws])
        low, high = np.percentile(boot, [2.5, 97.5]) if resamples else (np.nan, np.nan)
        out[name] = DetectionMetric(name, metric(scores, labels), (float(low), float(high)), positive.size, negative.size)
    return out
