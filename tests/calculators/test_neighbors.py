"""Neighbour-list reuse with a skin: the same pairs as a fresh list, fewer rebuilds."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mlff import MLFFCalculator
from mlff.calculators.neighbors import VerletNeighborList
from mlff.data.neighbors import neighbor_list
from mlff.errors import ConfigError
from tests import helpers

CUTOFF = 4.0  # the cutoff of helpers.build_potential


def pair_set(edge_index: np.ndarray, edge_shift: np.ndarray) -> set[tuple]:
    """The directed pairs as (i, j, S1, S2, S3) tuples; asserts there are no duplicates."""
    rows = np.column_stack([edge_index.T, np.rint(edge_shift).astype(np.int64)]).tolist()
    pairs = set(map(tuple, rows))
    assert len(pairs) == len(rows)
    return pairs


def fresh_pairs(atoms: Atoms, cutoff: float = CUTOFF) -> set[tuple]:
    return pair_set(*neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff))


def md_frames(atoms: Atoms, dynamics, steps: int = 50) -> list[Atoms]:
    """Snapshots of EMT molecular dynamics: the start and every step."""
    frames = []
    dynamics.attach(lambda: frames.append(atoms.copy()), interval=1)
    dynamics.run(steps)
    assert len(frames) == steps + 1
    return frames


def copper_langevin_frames() -> list[Atoms]:
    """50 Langevin steps (5 fs, 1000 K) of a periodic 32-atom Cu cell under EMT."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    rng = np.random.default_rng(0)
    thermalize_momenta(atoms, temperature_K=1000, rng=rng)
    dynamics = Langevin(atoms, 5 * units.fs, temperature_K=1000, friction=0.02 / units.fs,
                        fixcm=False, rng=rng)
    return md_frames(atoms, dynamics)


def ethanol_verlet_frames() -> list[Atoms]:
    """50 Velocity Verlet steps (0.5 fs, from 300 K) of ethanol under EMT (no cell)."""
    atoms = molecule("CH3CH2OH")
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    return md_frames(atoms, VelocityVerlet(atoms, 0.5 * units.fs))


@pytest.fixture(scope="module")
def trajectories():
    return {"copper": copper_langevin_frames(), "ethanol": ethanol_verlet_frames()}


@pytest.mark.parametrize("system", ["copper", "ethanol"])
def test_same_pairs_as_a_fresh_list_along_md(trajectories, system):
    frames = trajectories[system]
    assert np.abs(frames[-1].positions - frames[0].positions).max() > 0.5  # really moved
    nl = VerletNeighborList(CUTOFF, skin=0.5)
    for atoms in frames:
        assert pair_set(*nl.update(atoms)) == fresh_pairs(atoms)
    assert nl.calls == len(frames)
    # most steps reuse the list, and it is rebuilt as the atoms move
    assert 2 <= nl.rebuilds <= len(frames) // 4


def test_zero_skin_rebuilds_every_call(trajectories):
    nl = VerletNeighborList(CUTOFF, skin=0.0)
    for atoms in trajectories["copper"][:5]:
        assert pair_set(*nl.update(atoms)) == fresh_pairs(atoms)
    assert nl.calls == nl.rebuilds == 5


def test_rebuilds_only_past_half_the_skin():
    atoms = helpers.copper().repeat(2)
    nl = VerletNeighborList(CUTOFF, skin=0.4)
    nl.update(atoms)
    atoms.positions[3] += [0.19, 0.0, 0.0]  # < skin/2: reuse
    assert pair_set(*nl.update(atoms)) == fresh_pairs(atoms)
    assert nl.rebuilds == 1
    atoms.positions[3] += [0.02, 0.0, 0.0]  # 0.21 Å from the build > skin/2: rebuild
    assert pair_set(*nl.update(atoms)) == fresh_pairs(atoms)
    assert nl.rebuilds == 2


def test_wrapped_atoms_trigger_a_rebuild():
    atoms = helpers.copper().repeat(2)
    atoms.positions[0] -= 0.3 * atoms.cell[0] / np.linalg.norm(atoms.cell[0])
    atoms.positions[0] -= atoms.cell[0]  # well outside the cell
    nl = VerletNeighborList(CUTOFF, skin=0.5)
    before = nl.update(atoms)
    atoms.wrap()  # ASE moves it back by a lattice vector: the cell shifts of its pairs change
    after = nl.update(atoms)
    assert nl.rebuilds == 2
    assert pair_set(*after) == fresh_pairs(atoms) != pair_set(*before)


@pytest.mark.parametrize("change", ["cell", "pbc", "numbers", "length"])
def test_changed_structure_triggers_a_rebuild(change):
    atoms = helpers.copper().repeat(2)
    nl = VerletNeighborList(CUTOFF, skin=0.5)
    nl.update(atoms)
    if change == "cell":
        atoms.set_cell(atoms.cell.array * 1.001, scale_atoms=False)
    elif change == "pbc":
        atoms.pbc = (True, True, False)
    elif change == "numbers":
        atoms.numbers[0] = 1
    else:
        atoms = atoms[:-1]
    assert pair_set(*nl.update(atoms)) == fresh_pairs(atoms)
    assert nl.rebuilds == 2


def test_tiny_cell_is_never_reused():
    # a lattice translation shorter than skin/2 could hide a wrap: rebuild every call
    atoms = Atoms("H", positions=[[0.0, 0.0, 0.0]], cell=np.diag([0.2, 5.0, 5.0]), pbc=True)
    nl = VerletNeighborList(1.0, skin=0.5)
    for _ in range(3):
        assert pair_set(*nl.update(atoms)) == fresh_pairs(atoms, 1.0)
    assert nl.rebuilds == 3


@pytest.mark.parametrize("skin", [-0.1, float("nan")])
def test_bad_skin(skin):
    with pytest.raises(ConfigError, match="skin"):
        VerletNeighborList(CUTOFF, skin=skin)
    with pytest.raises(ConfigError, match="skin"):
        MLFFCalculator(helpers.build_potential("schnet"), skin=skin)


@pytest.mark.parametrize("system", ["copper", "ethanol"])
def test_calculator_with_and_without_skin_agree_along_md(trajectories, system):
    potential = helpers.build_potential("schnet", scale=10.0, shift=0.25)
    reused, fresh = MLFFCalculator(potential, skin=0.5), MLFFCalculator(potential, skin=0.0)
    properties = ["energy", "energies", "forces"] + (["stress"] if system == "copper" else [])
    for atoms in trajectories[system]:
        for name in properties:
            np.testing.assert_allclose(reused.get_property(name, atoms),
                                       fresh.get_property(name, atoms), rtol=0, atol=1e-10)
    frames = len(trajectories[system])
    assert reused.neighbor_list.calls == fresh.neighbor_list.calls == frames
    assert fresh.neighbor_list.rebuilds == frames
    assert 1 <= reused.neighbor_list.rebuilds <= frames // 4


def test_md_driven_by_the_calculator_reuses_the_list():
    # the calculator drives the MD itself (ASE hands it the moving atoms every step)
    potential = helpers.build_potential("painn", scale=10.0)
    atoms = helpers.copper().repeat(2)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    atoms.calc = MLFFCalculator(potential, skin=0.5)
    reference = MLFFCalculator(potential, skin=0.0)

    def check():
        assert atoms.get_potential_energy() == pytest.approx(
            reference.get_potential_energy(atoms), abs=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(atoms), atol=1e-10)

    dynamics = VelocityVerlet(atoms, 2 * units.fs)
    dynamics.attach(check, interval=1)
    dynamics.run(30)
    nl = atoms.calc.neighbor_list
    assert nl.calls == 31 and nl.rebuilds < nl.calls // 3
