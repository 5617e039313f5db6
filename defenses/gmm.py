"""A two-component one-dimensional Gaussian mixture fitted by EM (for SafeCLIP's data split)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipbench.errors import ClipbenchError


@dataclass
class Gmm1d:
    """Weights, means and variances of two components; component 1 has the larger mean."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    def posterior_high(self, values: np.ndarray) -> np.ndarray:
        """Posterior probability that each value belongs to the higher-mean component."""
        values = np.asarray(values, dtype=np.float64)[:, None]
        log_density = -0.5 * ((values - self.means) ** 2 / self.variances + np.log(2 * np.pi * self.variances))
        log_joint = log_density + np.log(self.weights)
        log_joint -= log_joint.max(axis=1, keepdims=True)
        joint = np.exp(log_joint)
        return joint[:, 1] / joint.sum(axis=1)


def fit_gmm(values: np.ndarray, iterations: int = 200, tolerance: float = 1e-8) -> Gmm1d:
    """Fit two Gaussians to ``values``; values that cannot be split raise :class:`ClipbenchError`."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or not np.isfinite(values).all():
        raise ClipbenchError("the Gaussian mixture needs at least two finite similarities")
    spread = values.std()
    if spread < 1e-8:
        raise ClipbenchError(f"the Gaussian mixture cannot split {len(values)} similarities that are all equal ({values[0]:.4f})")
    low, high = np.quantile(values, [0.25, 0.75])
    means = np.array([low, high]) if high > low else np.array([values.mean() - spread, values.mean() + spread])
    variances = np.full(2, spread**2)
    weights = np.full(2, 0.5)
    previous = -np.inf
    floor = 1e-6 * spread**2
    for _ in range(iterations):
        model = Gmm1d(weights, means, variances)
        high_posterior = model.posterior_high(values)
        responsibilities = np.stack([1 - high_posterior, high_posterior], axis=1)
        mass = responsibilities.sum(axis=0) + 1e-12
        weights = mass / len(values)
        means = (responsibilities * values[:, None]).sum(axis=0) / mass
        variances = np.maximum((responsibilities * (values[:, None] - means) ** 2).sum(axis=0) / mass, floor)
        log_likelihood = float(np.sum(np.log(
            (weights / np.sqrt(2 * np.pi * variances) * np.exp(-0.5 * (values[:, None] - means) ** 2 / variances)).sum(axis=1) + 1e-300
        )))
        if abs(log_likelihood - previous) < tolerance * max(1.0, abs(log_likelihood)):
            break
        previous = log_likelihood
    order = np.argsort(means)
    return Gmm1d(weights[order], means[order], variances[order])
