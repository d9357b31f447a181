import numpy as np
import pytest

from mlff.uq.calibration import (
    Calibration,
    calibration_metrics,
    fit_calibration,
    miscalibration_area,
    structure_values,
)


def _synthetic(a=2.0, b=1.3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.normal(np.log(0.02), 0.6, n))
    error = a * sigma**b * np.exp(rng.normal(0.0, 0.1, n))
    return sigma, error


def test_power_law_recovers_its_parameters():
    sigma, error = _synthetic()
    fit = fit_calibration(sigma, error, "power_law")
    assert fit.params["a"] == pytest.approx(2.0, rel=0.15)
    assert fit.params["b"] == pytest.approx(1.3, abs=0.03)


def test_scale_is_the_geometric_mean_ratio():
    sigma = np.array([0.01, 0.02, 0.04])
    fit = fit_calibration(sigma, 3 * sigma, "scale")
    assert fit.params["a"] == pytest.approx(3.0)
    np.testing.assert_allclose(fit.predict(sigma), 3 * sigma)


def test_isotonic_is_monotonic_and_extends_beyond_its_range():
    sigma, error = _synthetic(b=1.0)
    fit = fit_calibration(sigma, error, "isotonic")
    grid = np.linspace(0, 2 * sigma.max(), 500)
    predicted = fit.predict(grid)
    assert np.all(np.diff(predicted) >= -1e-15)
    assert predicted[-1] > fit.predict(sigma.max())  # not flat beyond the last knot
    round_trip = Calibration.from_dict(fit.to_dict())
    np.testing.assert_array_equal(round_trip.predict(grid), predicted)


def test_structure_values_are_rms_over_atoms():
    sigma, error = structure_values([np.array([3.0, 4.0])], [np.array([[3.0, 0, 0], [0, 4.0, 0]])])
    assert sigma[0] == pytest.approx(np.sqrt(12.5))
    assert error[0] == pytest.approx(np.sqrt(12.5))


def test_miscalibration_area_is_small_when_errors_follow_the_prediction():
    rng = np.random.default_rng(1)
    predicted = np.exp(rng.normal(np.log(0.05), 0.5, 5000))
    errors = rng.normal(size=(5000, 3)) * (predicted / np.sqrt(3))[:, None]
    area, expected, observed = miscalibration_area(predicted, errors)
    assert area < 0.02
    assert np.all(np.diff(observed) >= 0)
    overconfident, _, _ = miscalibration_area(predicted / 3, errors)
    assert overconfident > 0.2


def test_metrics_of_a_good_calibration():
    rng = np.random.default_rng(2)
    sigmas, errors = [], []
    for _ in range(200):
        level = np.exp(rng.normal(np.log(0.01), 0.7))
        s = level * np.exp(rng.normal(0, 0.2, 9))
        sigmas.append(s)
        errors.append(rng.normal(size=(9, 3)) * (2 * s / np.sqrt(3))[:, None])
    sigma, error = structure_values(sigmas, errors)
    fit = fit_calibration(sigma, error, "power_law")
    metrics = calibration_metrics(fit, sigmas, errors)
    assert metrics["spearman"] > 0.8
    assert 0.8 < metrics["ratio_of_means"] < 1.25
    assert metrics["miscalibration_area"] < 0.1
    bad = calibration_metrics(Calibration("scale", {"a": 0.1}), sigmas, errors)
    assert bad["ratio_of_means"] < 0.1 and bad["miscalibration_area"] > 0.3
