"""The linear probe on synthetic features: separable classes, random labels, scikit-learn's fit."""

from __future__ import annotations

import numpy as np
import pytest

from clipbench.errors import ClipbenchError
from clipbench.linear_probe import _accuracy, _fit, linear_probe


def _blobs(n: int, classes: int = 10, dim: int = 16, spread: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(size=(classes, dim)) * 3
    labels = rng.integers(0, classes, n)
    return centres[labels] + spread * rng.normal(size=(n, dim)), labels


def test_separable_classes_are_probed_near_perfectly():
    result = linear_probe(_blobs(600, seed=0), _blobs(200, seed=1), _blobs(500, seed=2))
    assert result.accuracy > 0.98 and result.total == 500
    assert set(result.validation) and result.strength in result.validation


def test_random_labels_are_probed_at_chance():
    rng = np.random.default_rng(3)
    split = lambda n: (rng.normal(size=(n, 16)), rng.integers(0, 10, n))  # noqa: E731
    result = linear_probe(split(600), split(200), split(2000), grid=5)
    assert 0.05 < result.accuracy < 0.16


def test_the_fit_matches_scikit_learns_logistic_regression():
    import torch
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(400, classes=4, dim=6, spread=2.0, seed=4)
    test_x, _ = _blobs(300, classes=4, dim=6, spread=2.0, seed=5)
    strength = 1e-2
    weights = _fit(torch.tensor(x), torch.tensor(y), 4, strength, 1000)
    ours = (torch.cat([torch.tensor(test_x), torch.ones(300, 1, dtype=torch.float64)], 1) @ weights).argmax(1).numpy()
    theirs = LogisticRegression(C=1 / (len(x) * strength), max_iter=5000, tol=1e-10).fit(x, y).predict(test_x)
    assert (ours == theirs).mean() > 0.98
    assert _accuracy(weights, torch.tensor(x), torch.tensor(y)) > 0.8 * len(x)


def test_bad_splits_are_one_clear_error():
    good = _blobs(50)
    with pytest.raises(ClipbenchError, match="the validation split has 0 features"):
        linear_probe(good, (np.zeros((0, 16)), np.zeros(0, int)), good)
    with pytest.raises(ClipbenchError, match="test split's features are not all finite"):
        linear_probe(good, good, (np.full((5, 16), np.nan), np.zeros(5, int)))
