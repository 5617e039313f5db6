"""Linear-probe accuracy: a multinomial logistic regression on frozen image features, its L2
strength chosen on a validation split, evaluated on the test split.

CLIP's paper (Radford et al., 2021, appendix A.3) trains scikit-learn's L-BFGS logistic regression
on frozen features and picks the L2 strength on a validation split by a search over 1e-6 to 1e6.
Here the same model is fitted with torch's L-BFGS (full batch; on a GPU for large feature sets) on
standardised features (mean and deviation of the training split), over ``grid`` strengths spaced
logarithmically over CLIP's range, 1e-6 to 1e6 (default 13, one per decade: clipbench's choice;
CLIP refines its search within the range); the strength with the best
validation accuracy (the smallest on ties) is kept and its model, fitted on the training split
alone, is scored on the test split. The loss is the mean cross-entropy plus ``strength / 2``
times the sum of squared weights (the intercept not penalised), scikit-learn's objective with
``C = 1 / (n * strength)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import ClipbenchError


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracy of the selected strength, the strength, and every strength's validation accuracy."""

    accuracy: float
    correct: int
    total: int
    strength: float
    validation: dict[float, float]


def _design(features: torch.Tensor) -> torch.Tensor:
    """``features`` with a column of ones for the intercept."""
    return torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype, device=features.device)], dim=1)


def _fit(features: torch.Tensor, labels: torch.Tensor, classes: int, strength: float, max_iter: int) -> torch.Tensor:
    """Weights ``(D + 1) x C`` (the last row the intercept) minimising cross-entropy + strength x |W|^2 / 2."""
    weights = torch.zeros(features.shape[1] + 1, classes, dtype=features.dtype, device=features.device, requires_grad=True)
    design = _design(features)
    optimizer = torch.optim.LBFGS([weights], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(design @ weights, labels) + 0.5 * strength * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def _accuracy(weights: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> int:
    return int(((_design(features) @ weights).argmax(1) == labels).sum())


def linear_probe(train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], grid: int = 13, max_iter: int = 1000,
                 device: torch.device | str = "cpu") -> ProbeResult:
    """Fit on ``train`` at each strength, select on ``validation``, score on ``test``; each split is
    ``(features N x D, integer labels N)``."""
    for name, (x, y) in (("train", train), ("validation", validation), ("test", test)):
        if len(x) == 0 or len(x) != len(y):
            raise ClipbenchError(f"linear probe: the {name} split has {len(x)} features and {len(y)} labels")
        if not np.isfinite(x).all():
            raise ClipbenchError(f"linear probe: the {name} split's features are not all finite")
    classes = int(max(train[1].max(), validation[1].max(), test[1].max())) + 1
    mean, std = train[0].mean(0), train[0].std(0) + 1e-8

    def tensors(split):
        x = torch.as_tensor((split[0] - mean) / std, dtype=torch.float64, device=device)
        return x, torch.as_tensor(split[1], dtype=torch.long, device=device)

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = tensors(train), tensors(validation), tensors(test)
    strengths = np.logspace(-6, 6, grid)
    fitted, scores = {}, {}
    for strength in strengths:
        fitted[float(strength)] = _fit(train_x, train_y, classes, float(strength), max_iter)
        scores[float(strength)] = _accuracy(fitted[float(strength)], val_x, val_y) / len(val_y)
    best = min(scores, key=lambda s: (-scores[s], s))
    correct = _accuracy(fitted[best], test_x, test_y)
    return ProbeResult(correct / len(test_y), correct, len(test_y), best, scores)
