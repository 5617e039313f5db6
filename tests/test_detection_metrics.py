"""Detection metrics against scikit-learn's implementations, on hand-built and tied scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from clipbench.detection_metrics import auprc, auroc, detection_metrics, tpr_at_fpr
from clipbench.errors import ClipbenchError


def _cases():
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.1
    yield "separated", np.where(labels, 2.0, 0.0) + rng.normal(size=400), labels
    yield "tied", np.round(rng.normal(size=400) + labels, 1), labels  # many equal scores
    yield "inverted", -labels.astype(float) + 0.01 * rng.normal(size=400), labels
    yield "hand-built", np.array([0.9, 0.8, 0.8, 0.3, 0.2, 0.1]), np.array([1, 0, 1, 0, 1, 0], bool)


@pytest.mark.parametrize("name,scores,labels", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_auroc_and_auprc_match_scikit_learn(name, scores, labels):
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auprc(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("name,scores,labels", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.3])
def test_tpr_at_fpr_matches_scikit_learns_roc_curve(name, scores, labels, fpr):
    false_rates, true_rates, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert tpr_at_fpr(scores, labels, fpr) == pytest.approx(true_rates[false_rates <= fpr].max(), abs=1e-12)


@pytest.mark.parametrize("name,scores,labels", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_sampled_roc_curve_is_tpr_at_each_fpr(name, scores, labels):
    from clipbench.detection_metrics import roc_on_grid

    grid = np.linspace(0, 1, 21)
    np.testing.assert_allclose(roc_on_grid(scores, labels, grid), [tpr_at_fpr(scores, labels, g) for g in grid])


def test_hand_built_values():
    scores, labels = np.array([0.9, 0.8, 0.8, 0.3, 0.2, 0.1]), np.array([1, 0, 1, 0, 1, 0], bool)
    # pairs (poisoned, clean): 3 x 3 = 9; poisoned above clean: 0.9 beats 3, 0.8 beats 2 and ties 1, 0.2 beats 1
    assert auroc(scores, labels) == pytest.approx((3 + 2.5 + 1) / 9)
    assert tpr_at_fpr(scores, labels, 0.0) == pytest.approx(1 / 3)


def test_bootstrap_interval_holds_the_value_and_is_reproducible():
    _, scores, labels = next(_cases())
    first, again = detection_metrics(scores, labels, resamples=200), detection_metrics(scores, labels, resamples=200)
    for name, metric in first.items():
        assert metric.ci95[0] <= metric.value <= metric.ci95[1]
        assert metric.ci95 == again[name].ci95
        assert metric.poisoned == labels.sum() and metric.clean == (~labels).sum()
        assert metric.to_dict()["definition"]


@pytest.mark.parametrize("scores,labels,message", [
    ([0.1, np.nan, 0.3], [1, 0, 0], "not finite"),
    ([0.1, 0.2], [1, 0, 0], "2 scores for 3 items"),
    ([0.1, 0.2, 0.3], [0, 0, 0], "both poisoned and clean"),
])
def test_bad_scores_are_refused_in_one_line(scores, labels, message):
    with pytest.raises(ClipbenchError, match=message):
        auroc(np.array(scores), np.array(labels))
