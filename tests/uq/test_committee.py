import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from mlff import MLFFCalculator, load_model
from mlff.data import keys as K
from mlff.errors import ModelFileError
from mlff.uq import Committee, save_committee
from mlff.uq.calibration import Calibration
from tests import helpers


def _committee(k=3, architecture="painn", **kwargs):
    return Committee([helpers.build_potential(architecture, seed=s, **kwargs) for s in range(k)])


def test_mean_and_spread_match_the_members():
    committee = _committee()
    graph = helpers.graph_of(helpers.ethanol(), committee.cutoff)
    out = committee(graph, compute_forces=True)
    members = [m(graph, compute_forces=True) for m in committee.members]
    energies = torch.stack([o[K.ENERGY] for o in members])
    forces = torch.stack([o[K.FORCES] for o in members])
    torch.testing.assert_close(out[K.ENERGY], energies.mean(0))
    torch.testing.assert_close(out[K.FORCES], forces.mean(0))
    expected = np.sqrt(((forces - forces.mean(0)).numpy() ** 2).sum(-1).mean(0))
    np.testing.assert_allclose(out["forces_std"].numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(out["energy_std"].detach().numpy(), energies.detach().numpy().std(0),
                               rtol=1e-12)
    assert float(out["forces_std"].min()) > 0


def test_identical_members_do_not_disagree():
    same = helpers.build_potential("painn", seed=0)
    committee = Committee([same, helpers.build_potential("painn", seed=0)])
    out = committee(helpers.graph_of(helpers.ethanol(), committee.cutoff))
    assert float(out["forces_std"].abs().max()) == 0.0


def test_members_must_agree_on_species_and_cutoff():
    with pytest.raises(ValueError, match="cutoff"):
        Committee([helpers.build_potential("painn"), helpers.build_potential("painn", cutoff=5.0)])
    with pytest.raises(ValueError, match="at least 2"):
        Committee([helpers.build_potential("painn")])


@pytest.mark.parametrize("architecture", ["painn", "mace"])
def test_save_load_gives_identical_outputs(tmp_path, architecture):
    committee = _committee(2, architecture)
    committee.calibration = Calibration("power_law", {"a": 2.0, "b": 1.1}).to_dict()
    path = save_committee(committee, tmp_path / "committee.mlff")
    loaded = load_model(path)
    assert isinstance(loaded, Committee) and loaded.size == 2
    assert loaded.calibration == committee.calibration
    graph = helpers.graph_of(bulk("Cu", cubic=True).repeat(2), committee.cutoff)
    a, b = committee(graph, compute_stress=True), loaded(graph, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS, "forces_std"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    with pytest.raises(ModelFileError, match="committee"):
        load_model(path, single=True)


def test_calculator_reports_disagreement_and_calibrated_error(tmp_path):
    committee = _committee()
    committee.calibration = Calibration("scale", {"a": 2.5}).to_dict()
    path = save_committee(committee, tmp_path / "c.mlff")
    atoms = bulk("Cu", cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    atoms.calc = MLFFCalculator(path)
    forces = atoms.get_forces()
    results = atoms.calc.results
    member_forces = [MLFFCalculator(m).get_forces(atoms) for m in load_model(path).members]
    np.testing.assert_allclose(forces, np.mean(member_forces, axis=0), atol=1e-12)
    sigma = atoms.calc.get_property("forces_std", atoms)
    assert sigma.shape == (len(atoms),)
    assert results["max_forces_std"] == pytest.approx(sigma.max())
    np.testing.assert_allclose(results["forces_error_estimate"], 2.5 * sigma)
    assert results["energy_std_per_atom"] == pytest.approx(results["energy_std"] / len(atoms))
    assert results["member_energies"].shape == (3,)
    assert atoms.get_stress().shape == (6,)


def test_committee_runs_ase_md():
    atoms = bulk("Cu", cubic=True).repeat(2)
    atoms.calc = MLFFCalculator(_committee(2))
    VelocityVerlet(atoms, timestep=1.0).run(5)
    assert np.isfinite(atoms.calc.results["max_forces_std"])
