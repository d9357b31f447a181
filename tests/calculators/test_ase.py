"""MLFFCalculator: results, consistency with the Potential, MD and relaxation in ASE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from mlff import MLFFCalculator
from mlff.data import keys as K
from mlff.errors import DataError, MLFFError, UnknownElementError
from mlff.models import save_model
from tests import helpers


@pytest.fixture
def model_file(tmp_path, potential):
    return save_model(potential, tmp_path / "model.mlff")


def test_results_from_a_model_file(model_file, potential):
    atoms = helpers.copper()
    atoms.calc = MLFFCalculator(model_file)
    energy = atoms.get_potential_energy()
    assert isinstance(energy, float)
    assert atoms.get_potential_energy(force_consistent=True) == energy  # free_energy
    assert atoms.calc.results["free_energy"] == energy
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert energies.sum() == pytest.approx(energy, abs=1e-10)
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    assert forces.shape == (len(atoms), 3) and stress.shape == (6,)
    assert np.abs(forces).max() > 1e-3 and np.abs(stress).max() > 1e-5

    # the same numbers as the Potential itself (ASE's Voigt order: xx yy zz yz xz xy)
    out = potential(helpers.graph_of(atoms, potential.cutoff), compute_stress=True)
    assert energy == pytest.approx(float(out[K.ENERGY].detach()[0]), abs=1e-12)
    np.testing.assert_allclose(forces, out[K.FORCES].detach().numpy(), atol=1e-12)
    s = out[K.STRESS].detach()[0].numpy()
    np.testing.assert_allclose(stress, [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]],
                               atol=1e-12)


def test_path_and_potential_agree(model_file, potential):
    atoms = helpers.copper()
    from_file = MLFFCalculator(model_file).get_property("forces", atoms)
    from_object = MLFFCalculator(potential).get_property("forces", atoms)
    np.testing.assert_array_equal(from_file, from_object)
    assert MLFFCalculator(str(model_file)).get_property("energy", atoms) == pytest.approx(
        MLFFCalculator(potential).get_property("energy", atoms), abs=1e-12
    )


def test_forces_match_numerical_forces(potential):
    atoms = helpers.ethanol()
    atoms.calc = MLFFCalculator(potential)
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-2
    np.testing.assert_allclose(forces, numerical, atol=1e-6)


def test_results_follow_the_positions(potential):
    atoms = helpers.ethanol()
    atoms.calc = MLFFCalculator(potential)
    first = atoms.get_potential_energy()
    atoms.positions[0] += [0.05, 0.0, 0.0]
    assert atoms.get_potential_energy() != first
    atoms.positions[0] -= [0.05, 0.0, 0.0]
    assert atoms.get_potential_energy() == pytest.approx(first, abs=1e-12)


def _verlet_energy_error(potential, timestep_fs: float, steps: int):
    """Largest deviation of the total energy (eV) from its start in Velocity Verlet MD of
    rattled Cu at 300 K, the largest atom displacement and the potential-energy range."""
    atoms = helpers.copper().repeat((2, 1, 1))
    atoms.calc = MLFFCalculator(potential)
    # Maxwell-Boltzmann momenta at 300 K (by hand: the ASE helper's name changes by version)
    masses = atoms.get_masses()[:, None]
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * 300))
    start = atoms.get_total_energy()
    positions = atoms.positions.copy()
    total, potential_energies = [], []

    def record():
        total.append(atoms.get_total_energy())
        potential_energies.append(atoms.get_potential_energy())

    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dynamics.attach(record, interval=1)
    dynamics.run(steps)
    assert dynamics.nsteps == steps and len(total) == steps + 1
    assert np.isfinite(atoms.positions).all()
    moved = np.abs(atoms.positions - positions).max()
    return np.abs(np.array(total) - start).max(), moved, np.ptp(potential_energies)


def test_velocity_verlet_md(potential):
    # energy flows between kinetic and potential energy, and the total is conserved up to
    # the integrator's O(dt²) error: halving the time step divides the error by about 4,
    # which holds only when the forces are the exact gradient of the energy
    error, moved, swing = _verlet_energy_error(potential, 1.0, 20)
    half_error, _, _ = _verlet_energy_error(potential, 0.5, 40)
    assert moved > 1e-3 and swing > 1e-3
    assert error < 0.05 * swing
    assert half_error < 0.35 * error


def test_bfgs_lowers_the_energy(potential):
    atoms = helpers.ethanol()
    atoms.calc = MLFFCalculator(potential)
    start = atoms.get_potential_energy()
    energies = []
    optimizer = BFGS(atoms, logfile=None)
    optimizer.attach(lambda: energies.append(atoms.get_potential_energy()))
    optimizer.run(fmax=1e-4, steps=5)
    assert optimizer.nsteps == 5
    assert energies[0] == start and len(energies) == 6
    assert atoms.get_potential_energy() < start - 1e-4


def test_unknown_element(architecture):
    potential = helpers.build_potential(architecture, species=[1, 6, 8], e0s=[0.0, 0.0, 0.0])
    atoms = Atoms("CuOH", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]])
    atoms.calc = MLFFCalculator(potential)
    with pytest.raises(UnknownElementError, match="Cu") as info:
        atoms.get_potential_energy()
    assert isinstance(info.value, MLFFError) and "H, C, O" in str(info.value)


def test_nan_positions(potential):
    atoms = helpers.water()
    atoms.positions[1, 0] = np.nan
    atoms.calc = MLFFCalculator(potential)
    with pytest.raises(DataError, match="NaN"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("pbc", [False, (True, True, False)], ids=["molecule", "slab"])
def test_stress_needs_full_periodicity(potential, pbc):
    atoms = helpers.ethanol() if pbc is False else helpers.copper()
    atoms.pbc = pbc
    atoms.calc = MLFFCalculator(potential)
    atoms.get_forces()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


@pytest.mark.parametrize("dtype", ["float32", torch.float32])
def test_float32_option(tmp_path, architecture, dtype):
    potential = helpers.build_potential(architecture, scale=10.0)
    path = save_model(potential, tmp_path / "model.mlff")
    atoms = helpers.copper()
    reference = MLFFCalculator(path)
    assert reference.model.dtype == torch.float64
    expected = {p: reference.get_property(p, atoms) for p in ("energy", "forces", "stress")}
    for calc in (MLFFCalculator(path, dtype=dtype),
                 MLFFCalculator(helpers.build_potential(architecture, scale=10.0), dtype=dtype)):
        assert calc.model.dtype == torch.float32
        forces = calc.get_property("forces", atoms)
        assert forces.dtype == np.float64  # results are float64 numpy arrays for ASE
        assert calc.get_property("energy", atoms) == pytest.approx(expected["energy"], rel=1e-6)
        np.testing.assert_allclose(forces, expected["forces"], atol=1e-4)
        stress = calc.get_property("stress", atoms)
        np.testing.assert_allclose(stress, expected["stress"], atol=1e-5)
        assert not np.array_equal(forces, expected["forces"])  # really computed in float32


def test_float64_option_upcasts_a_float32_model(architecture):
    potential = helpers.build_potential(architecture, dtype=torch.float32)
    calc = MLFFCalculator(potential, dtype="float64")
    assert calc.model.dtype == torch.float64
    assert np.isfinite(calc.get_property("energy", helpers.water()))


def test_the_callers_model_is_not_moved_cast_or_switched_to_eval():
    potential = helpers.build_potential("schnet").train()  # float64, in training mode
    calc = MLFFCalculator(potential, dtype="float32")
    assert calc.model.dtype == torch.float32 and not calc.model.training
    assert potential.dtype == torch.float64 and potential.training
    ready = potential.eval()
    assert MLFFCalculator(ready).model is ready  # nothing to change: no copy


def test_many_calls_leave_no_objects_behind():
    """No leak: after warm-up, a few hundred MD-like calls keep the live object count flat."""
    import gc

    potential = helpers.build_potential("mace", dtype=torch.float32)
    atoms = helpers.copper().repeat((2, 2, 2))
    atoms.calc = MLFFCalculator(potential)
    rng = np.random.default_rng(0)

    def steps(count: int) -> None:
        for _ in range(count):
            atoms.positions += 1e-3 * rng.standard_normal(atoms.positions.shape)
            atoms.get_forces()

    steps(20)
    gc.collect()
    before = len(gc.get_objects())
    steps(300)
    gc.collect()
    assert len(gc.get_objects()) - before < 50
    assert atoms.calc.neighbor_list.rebuilds < 20  # the skin spared most rebuilds


def test_model_file_parameters_are_frozen(model_file):
    calculator = MLFFCalculator(model_file)
    assert not any(p.requires_grad for p in calculator.model.parameters())
