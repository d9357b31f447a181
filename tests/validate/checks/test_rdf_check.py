"""RDF: g(r) of a perfect crystal against its known shells, normalisation, and the check
comparing the model's MD with a reference run or trajectory."""

from __future__ import annotations

import math

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlff.errors import ConfigError
from mlff.validate.checks import rdf

A = 3.59


def test_perfect_fcc_first_shell_holds_twelve_neighbours():
    atoms = bulk("Cu", "fcc", a=A, cubic=True).repeat(3)
    result = rdf.compute_rdf([atoms], r_max=5.0, bins=250)
    r, g = result.r, result.curves["Cu-Cu"]
    assert result.periodic and "all" not in result.curves
    assert rdf.first_peak(r, g) == pytest.approx(A / math.sqrt(2), abs=0.02)
    density = len(atoms) / atoms.get_volume()
    dr = r[1] - r[0]
    first_shell = r < 0.5 * (A / math.sqrt(2) + A)  # between the first and second shells
    shell = 4 / 3 * math.pi * ((r + dr / 2) ** 3 - (r - dr / 2) ** 3)  # each bin's volume
    assert np.sum(density * g[first_shell] * shell[first_shell]) == pytest.approx(12.0, rel=1e-9)


def test_r_max_is_capped_at_half_the_cell_width():
    atoms = bulk("Cu", "fcc", a=A, cubic=True)
    assert A / 2 * 0.998 < rdf.usable_r_max(atoms, 10.0) < A / 2


def test_molecule_gives_unit_area_pair_distributions():
    atoms = molecule("CH3CH2OH")
    result = rdf.compute_rdf([atoms], r_max=4.0, bins=80)
    assert not result.periodic
    dr = result.r[1] - result.r[0]
    for name, curve in result.curves.items():
        if curve.any():
            assert curve.sum() * dr == pytest.approx(1.0), name
    assert "all" in result.curves and {"H-C", "C-O", "C-C"} <= set(result.curves)
    assert "O-O" not in result.curves  # one O atom: the pair cannot occur


@pytest.fixture(scope="module")
def copper():
    return bulk("Cu", "fcc", a=A, cubic=True).repeat(2)


FAST = rdf.RDFOptions(timestep_fs=2.0, time_ps=0.12, equilibration_ps=0.04, sample_interval=5,
                      bins=60)


def test_same_calculator_same_seed_gives_identical_rdfs(tmp_path, copper):
    result = rdf.run(EMT(), copper, tmp_path, reference=EMT(), options=FAST)
    row = result.summary["pairs"]["Cu-Cu"]
    assert row["rms_difference"] == 0.0
    assert row["model_first_peak_A"] == row["reference_first_peak_A"]
    assert 2.3 < row["model_first_peak_A"] < 2.8
    assert result.headlines[0].passed
    assert (tmp_path / "rdf-rdf.png").exists()


def test_reference_trajectory_from_a_file(tmp_path, copper):
    frames = rdf.nvt_frames(EMT(), copper, rdf.RDFOptions(timestep_fs=2.0, time_ps=0.1,
                                                          equilibration_ps=0.02, seed=5))
    path = tmp_path / "reference.xyz"
    ase.io.write(path, frames)
    result = rdf.run(EMT(), copper, tmp_path, reference_frames=ase.io.read(path, ":"),
                     options=FAST)
    row = result.summary["pairs"]["Cu-Cu"]
    assert 0.0 < row["rms_difference"] < 1.5  # another run of the same physics
    assert result.summary["reference_frames"] == len(frames)
    with pytest.raises(ConfigError, match="Cu32"):
        rdf.run(EMT(), molecule("H2O"), tmp_path, reference_frames=frames, options=FAST)


def test_a_molecule_has_no_curve_for_an_element_with_one_atom():
    from mlff.validate.checks.rdf import compute_rdf
    from tests import helpers

    rdf = compute_rdf([helpers.ethanol()], 6.0, 60)  # one O: no O-O pair can occur
    assert "O-O" not in rdf.curves and {"C-O", "H-O", "C-C", "H-H"} <= set(rdf.curves)
    assert all(np.isfinite(curve).all() and curve.sum() > 0 for curve in rdf.curves.values())
