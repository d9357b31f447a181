"""The MD stability check on EMT copper: a stable run, a collapsing one, bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.errors import ConfigError
from mlff.validate.checks import md_stability as md


@pytest.fixture(scope="module")
def copper():
    return bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)


def test_stable_run_conserves_energy(tmp_path, copper):
    options = md.MDOptions(timestep_fs=2.0, time_ps=0.2, nvt_time_ps=0.1, sample_interval=5)
    result = md.run(EMT(), copper, tmp_path, options)
    s = result.summary
    assert s["stable"] and s["nve_time_ps"] == pytest.approx(0.2)
    assert abs(s["nve_drift_meV_per_atom_per_ps"]) < 0.5
    assert s["nve_fluctuation_meV_per_atom"] < 0.1
    assert 2.0 < s["min_distance_A"] < s["initial_min_distance_A"] + 1e-9
    assert s["canonical_std_temperature_K"] == pytest.approx(300 * np.sqrt(2 / (3 * 32)))
    # the drift is the slope of the energy series stored beside the figure
    data = json.loads((tmp_path / "md-stability.json").read_text())["data"]
    t = np.array(data["nve"]["time_ps"])
    e = np.array(data["nve"]["total_energy_meV_per_atom_from_start"])
    assert np.polyfit(t, e, 1)[0] == pytest.approx(s["nve_drift_meV_per_atom_per_ps"], rel=1e-6)
    drift = next(h for h in result.headlines if h.quantity == "NVE energy drift")
    distance = next(h for h in result.headlines if h.quantity == "minimum interatomic distance")
    assert drift.passed and distance.passed
    assert (tmp_path / "md-stability.png").stat().st_size > 1000


def test_huge_timestep_is_reported_as_a_collapse(tmp_path, copper):
    options = md.MDOptions(timestep_fs=40.0, time_ps=1.0, nvt_time_ps=1.0)
    result = md.run(EMT(), copper, tmp_path, options)
    assert not result.summary["stable"]
    assert "collapsed" in result.summary["stop_reason"] or "not finite" in \
        result.summary["stop_reason"]
    assert result.passed is False
    assert any(note.startswith("NVT:") for note in result.notes)


@pytest.mark.parametrize(("field", "value"), [("timestep_fs", 0.0), ("time_ps", -1.0),
                                              ("thermostat", "nose"), ("collapse_fraction", 1.5),
                                              ("sample_interval", 0)])
def test_invalid_settings(tmp_path, copper, field, value):
    options = md.MDOptions(**{field: value})
    with pytest.raises(ConfigError, match=field if field != "thermostat" else "nose"):
        md.run(EMT(), copper, tmp_path, options)
