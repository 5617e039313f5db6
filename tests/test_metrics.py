"""CA/ASR/ASR-all/RA from hand-built logits, and the Wilson interval against its closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clipbench.metrics import DEFINITIONS, Proportion, backdoor_metrics, topk_hits, wilson_interval

Z = 1.959963984540054


def one_hot_logits(predictions, classes: int = 10) -> np.ndarray:
    """Logits whose argmax is ``predictions`` (a clear margin, no ties)."""
    logits = np.zeros((len(predictions), classes))
    logits[np.arange(len(predictions)), predictions] = 5.0
    return logits


TARGET = 8
# 3 images of the target class, 7 of other classes.
LABELS = np.array([8, 8, 8, 0, 1, 2, 3, 4, 5, 6])


def test_asr_excludes_target_class_images_asr_all_includes_them():
    clean = one_hot_logits(LABELS)  # perfect clean model
    # Triggered: two non-target images flip to the target; target-class images stay the target.
    triggered_pred = LABELS.copy()
    triggered_pred[[3, 4]] = TARGET
    metrics = backdoor_metrics(clean, one_hot_logits(triggered_pred), LABELS, TARGET)

    assert (metrics["asr"].successes, metrics["asr"].total) == (2, 7)
    assert metrics["asr"].value == pytest.approx(2 / 7)
    assert (metrics["asr_all"].successes, metrics["asr_all"].total) == (5, 10)
    assert metrics["asr_all"].value == pytest.approx(0.5)
    assert (metrics["ra"].successes, metrics["ra"].total) == (5, 7)
    assert (metrics["ca_top1"].successes, metrics["ca_top1"].total) == (10, 10)


def test_model_that_always_predicts_the_target():
    clean = one_hot_logits(LABELS)
    triggered = one_hot_logits(np.full(len(LABELS), TARGET))
    metrics = backdoor_metrics(clean, triggered, LABELS, TARGET)
    assert metrics["asr"].value == 1.0
    assert metrics["asr_all"].value == 1.0
    assert metrics["ra"].value == 0.0
    assert metrics["ra"].total == 7


def test_clean_model_ignoring_trigger_has_ra_equal_ca_over_non_target_images():
    # A model that is right on some images and wrong on others, identically with and without trigger.
    predictions = np.array([8, 0, 8, 0, 1, 9, 3, 9, 5, 9])
    logits = one_hot_logits(predictions)
    metrics = backdoor_metrics(logits, logits.copy(), LABELS, TARGET)
    non_target = LABELS != TARGET
    ca_non_target = np.mean(predictions[non_target] == LABELS[non_target])
    assert metrics["ra"].value == pytest.approx(ca_non_target)
    assert metrics["ra"].value == pytest.approx(4 / 7)
    assert metrics["ca_top1"].value == pytest.approx(6 / 10)
    assert metrics["asr"].value == 0.0


def test_top5_counts_label_among_five_highest():
    labels = np.array([0, 1, 2])
    logits = np.array([
        [0.0, 9, 8, 7, 6, 5, 4, 3, 2, 1],   # label 0 is the lowest: miss
        [9.0, 5, 8, 7, 6, 0, 0, 0, 0, 0],   # label 1 is 5th highest: hit (top-1 miss)
        [0.0, 0, 9, 0, 0, 0, 0, 0, 0, 0],   # label 2 is top-1: hit
    ])
    assert topk_hits(logits, labels, 5).tolist() == [False, True, True]
    metrics = backdoor_metrics(logits, logits, labels, target=9)
    assert (metrics["ca_top5"].successes, metrics["ca_top5"].total) == (2, 3)
    assert (metrics["ca_top1"].successes, metrics["ca_top1"].total) == (1, 3)


def test_top5_is_omitted_with_fewer_than_five_classes():
    labels = np.array([0, 1, 2, 3])
    logits = one_hot_logits(labels, classes=4)
    metrics = backdoor_metrics(logits, logits, labels, target=3)
    assert "ca_top5" not in metrics
    assert metrics["ca_top1"].value == 1.0


def closed_form_wilson(successes: int, total: int) -> tuple[float, float]:
    p = successes / total
    z2 = Z * Z
    centre = (successes + z2 / 2) / (total + z2)
    half = Z * math.sqrt(total) / (total + z2) * math.sqrt(p * (1 - p) + z2 / (4 * total))
    return centre - half, centre + half


@pytest.mark.parametrize(
    "successes,total,expected",
    [
        (0, 10, (0.0, 0.27753279)),
        (5, 10, (0.23659309, 0.76340691)),
        (10, 10, (0.72246721, 1.0)),
        (1, 3, None),
        (37, 200, None),
    ],
)
def test_wilson_interval_matches_closed_form(successes, total, expected):
    low, high = wilson_interval(successes, total)
    ref_low, ref_high = closed_form_wilson(successes, total)
    assert low == pytest.approx(max(0.0, ref_low), abs=1e-9)
    assert high == pytest.approx(min(1.0, ref_high), abs=1e-9)
    if expected is not None:  # worked by hand: centre (x + z²/2)/(n + z²) ± half-width
        assert (low, high) == pytest.approx(expected, abs=1e-6)
    p = successes / total
    assert 0.0 <= low <= p <= high <= 1.0


def test_wilson_interval_of_zero_total_is_nan():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)
    proportion = Proportion.of(0, 0, "asr")
    assert math.isnan(proportion.value)
    assert math.isnan(proportion.ci95[0])


def test_proportion_record_carries_counts_interval_and_definition():
    record = Proportion.of(3, 12, "ra").to_dict()
    assert set(record) == {"value", "successes", "total", "ci95", "definition"}
    assert record["value"] == 0.25
    assert record["definition"] == DEFINITIONS["ra"]
    assert tuple(record["ci95"]) == pytest.approx(wilson_interval(3, 12))


def test_no_non_target_images_gives_nan_asr():
    labels = np.array([TARGET, TARGET])
    logits = one_hot_logits(labels)
    metrics = backdoor_metrics(logits, logits, labels, TARGET)
    assert metrics["asr"].total == 0 and math.isnan(metrics["asr"].value)
    assert metrics["asr_all"].value == 1.0


def test_wilson_interval_contains_p_for_every_count():
    for total in range(1, 60):
        for successes in range(total + 1):
            low, high = wilson_interval(successes, total)
            p = successes / total
            assert 0.0 <= low <= p <= high <= 1.0, (successes, total, low, high)
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0
