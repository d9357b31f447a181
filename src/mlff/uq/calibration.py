"""Calibration: from committee disagreement σ to the force error one should expect.

The raw disagreement of a committee ranks structures well but is not an error in eV/Å:
members trained on the same data agree more than they are right. A monotonic map
``ê = f(σ)`` is fitted on validation data, where the true errors are known:

``scale``       ê = a σ                      (one factor, least squares in log space)
``power_law``   ê = a σ^b                    (two parameters, least squares in log space)
``isotonic``    ê = non-decreasing step fit  (scipy's isotonic regression; linear beyond
                                              the fitted range)

Quantities (all eV/Å), per structure s of N_s atoms:
    σ_s = sqrt(mean_i σ_i²)             RMS of the per-atom disagreement
    e_s = sqrt(mean_i |F_i − F_i^ref|²)  RMS of the per-atom force-error norm
The same ``f`` applied to an atom's σ_i estimates that atom's |ΔF_i|.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import optimize, special, stats

Method = Literal["scale", "power_law", "isotonic"]
METHODS: tuple[str, ...] = ("scale", "power_law", "isotonic")
_TINY = 1e-12


@dataclass
class Calibration:
    """A fitted map from disagreement σ (eV/Å) to expected force error (eV/Å).

    Attributes:
        method: ``scale``, ``power_law`` or ``isotonic``.
        params: ``a`` (and ``b``) for the parametric maps; ``x``/``y`` knots for isotonic.
    """

    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def predict(self, sigma: np.ndarray | float) -> np.ndarray:
        """Expected error for each disagreement value (same shape as ``sigma``), eV/Å."""
        sigma = np.maximum(np.asarray(sigma, dtype=np.float64), 0.0)
        if self.method == "scale":
            return self.params["a"] * sigma
        if self.method == "power_law":
            return self.params["a"] * np.maximum(sigma, _TINY) ** self.params["b"]
        if self.method == "isotonic":
            x, y = np.asarray(self.params["x"]), np.asarray(self.params["y"])
            inside = np.interp(sigma, x, y)
            # beyond the last knot keep the last ratio ê/σ, rather than a flat line
            beyond = y[-1] * sigma / max(x[-1], _TINY)
            return np.where(sigma > x[-1], beyond, inside)
        raise ValueError(f"unknown calibration method {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (for the model file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        return cls(method=data["method"], params=dict(data["params"]))


def fit_calibration(sigma: np.ndarray, error: np.ndarray, method: Method = "power_law") -> Calibration:
    """Fit ``error ≈ f(sigma)`` on per-structure values (both (S,), eV/Å).

    Raises:
        ValueError: fewer than 2 structures (1 for ``scale``), or an unknown method.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    if sigma.shape != error.shape or sigma.size < (1 if method == "scale" else 2):
        raise ValueError(f"not enough matching values for a {method} fit: {sigma.shape} and "
                         f"{error.shape}")
    log_s = np.log(np.maximum(sigma, _TINY))
    log_e = np.log(np.maximum(error, _TINY))
    if method == "scale":
        return Calibration("scale", {"a": float(np.exp(np.mean(log_e - log_s)))})
    if method == "power_law":
        b, log_a = np.polyfit(log_s, log_e, 1)
        return Calibration("power_law", {"a": float(np.exp(log_a)), "b": float(b)})
    if method == "isotonic":
        order = np.argsort(sigma)
        fitted = optimize.isotonic_regression(error[order], increasing=True).x
        x, y = _merge_ties(sigma[order], fitted)
        return Calibration("isotonic", {"x": x.tolist(), "y": y.tolist()})
    raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS}")


def _merge_ties(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ``y`` over equal ``x`` so that the knots are strictly increasing."""
    unique, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=y)
    return unique, sums / np.bincount(inverse)


def structure_values(
    forces_std: list[np.ndarray], force_errors: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-structure σ_s and e_s (see the module docstring).

    Args:
        forces_std: S arrays (N_s,) of per-atom disagreement, eV/Å.
        force_errors: S arrays (N_s, 3) of predicted minus reference forces, eV/Å.

    Returns:
        σ (S,) and e (S,), eV/Å.
    """
    sigma = np.array([np.sqrt(np.mean(np.square(s))) for s in forces_std])
    error = np.array([np.sqrt(np.mean(np.sum(np.square(d), axis=-1))) for d in force_errors])
    return sigma, error


def miscalibration_area(
    predicted_atom_error: np.ndarray, force_errors: np.ndarray, points: int = 99
) -> tuple[float, np.ndarray, np.ndarray]:
    """Area between the observed and the ideal calibration curve of force components.

    Each component error ΔF_ia is taken as Gaussian with standard deviation
    ``ê_i / sqrt(3)`` (ê_i estimates the norm |ΔF_i|). For each expected proportion p,
    the observed proportion is the fraction of components inside the central interval
    holding p of that Gaussian; the area is the mean |observed − p| over p in (0, 1):
    0 is perfect, 0.5 the worst.

    Args:
        predicted_atom_error: (N,) calibrated per-atom error estimates, eV/Å.
        force_errors: (N, 3) predicted minus reference forces, eV/Å.

    Returns:
        The area, the expected proportions (points,) and the observed ones (points,).
    """
    scale = np.maximum(np.asarray(predicted_atom_error), _TINY)[:, None] / np.sqrt(3.0)
    z = np.abs(np.asarray(force_errors) / scale).ravel()
    expected = np.linspace(0.01, 0.99, points)
    bounds = np.sqrt(2.0) * special.erfinv(expected)
    observed = (z[None, :] <= bounds[:, None]).mean(axis=1)
    return float(np.mean(np.abs(observed - expected))), expected, observed


def calibration_metrics(
    calibration: Calibration,
    forces_std: list[np.ndarray],
    force_errors: list[np.ndarray],
) -> dict[str, float]:
    """How well ``calibration`` predicts the errors of a data set.

    Args:
        calibration: the fitted map.
        forces_std: S arrays (N_s,) of per-atom disagreement, eV/Å.
        force_errors: S arrays (N_s, 3) of force errors, eV/Å.

    Returns:
        ``spearman`` (rank correlation of σ_s and e_s), ``mean_predicted_meV_per_A`` and
        ``mean_observed_meV_per_A`` (per-structure means), ``ratio_of_means``
        (predicted/observed), ``geometric_mean_ratio`` (of per-structure ratios),
        ``within_factor_2`` (fraction of structures with ê_s/e_s in [1/2, 2]),
        ``miscalibration_area`` (force components).
    """
    sigma, error = structure_values(forces_std, force_errors)
    predicted = calibration.predict(sigma)
    ratio = np.maximum(predicted, _TINY) / np.maximum(error, _TINY)
    atoms_sigma = np.concatenate(forces_std)
    area, _, _ = miscalibration_area(calibration.predict(atoms_sigma), np.concatenate(force_errors))
    rho = stats.spearmanr(sigma, error).statistic if len(sigma) > 1 else float("nan")
    return {
        "num_structures": int(len(sigma)),
        "spearman": float(rho),
        "mean_sigma_meV_per_A": float(1000 * sigma.mean()),
        "mean_predicted_meV_per_A": float(1000 * predicted.mean()),
        "mean_observed_meV_per_A": float(1000 * error.mean()),
        "ratio_of_means": float(predicted.mean() / max(error.mean(), _TINY)),
        "geometric_mean_ratio": float(np.exp(np.mean(np.log(ratio)))),
        "within_factor_2": float(np.mean((ratio >= 0.5) & (ratio <= 2.0))),
        "miscalibration_area": area,
    }
