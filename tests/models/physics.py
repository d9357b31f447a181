"""The physics battery every architecture must pass, as an importable mixin.

A test class for a new architecture subclasses :class:`ModelPhysicsTests` and provides a
``hyperparameters`` fixture (tiny config, with ``architecture`` and ``cutoff``); the
``test_physics.py`` module already does so for every entry of
``tests.helpers.TINY_HYPERPARAMETERS``. All checks run in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_stress
from scipy.stats import special_ortho_group

from mlff.calculators import MLFFCalculator
from mlff.data import collate
from mlff.data import keys as K
from mlff.models import Potential, build_model, save_model
from mlff.uq.io import load_model
from tests import helpers

DTYPE = torch.float64


def random_rotation(seed: int, proper: bool) -> np.ndarray:
    """A random 3x3 orthogonal matrix with determinant +1 (proper) or -1 (with parity)."""
    rotation = special_ortho_group.rvs(3, random_state=seed)
    if not proper:
        rotation = rotation @ np.diag([1.0, 1.0, -1.0])
    return rotation


def transformed(atoms: Atoms, rotation: np.ndarray, translation=(0.0, 0.0, 0.0)) -> Atoms:
    """``atoms`` rotated by ``rotation`` (applied to positions and cell rows) and shifted."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    out.positions = atoms.positions @ rotation.T + np.asarray(translation)
    return out


class ModelPhysicsTests:
    """Physical invariants of a Potential wrapping one architecture (float64).

    Subclasses provide the ``hyperparameters`` fixture: a dict with at least
    ``architecture`` and ``cutoff``, small enough that the battery runs in seconds.
    """

    species = helpers.SPECIES
    e0s = helpers.E0S
    scale = 10.0  # random-init outputs are small; this makes forces O(0.1-1) eV/Å
    shift = 0.25

    @pytest.fixture
    def hyperparameters(self):  # pragma: no cover - must be overridden
        raise NotImplementedError("subclasses provide a tiny hyperparameters dict")

    @pytest.fixture
    def potential(self, hyperparameters) -> Potential:
        torch.manual_seed(0)
        model = build_model(hyperparameters, len(self.species))
        full = type(model).Config.model_validate(hyperparameters).model_dump()
        potential = Potential(model, full, self.species, self.e0s, self.scale, self.shift)
        return potential.to(DTYPE).eval()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def evaluate(potential: Potential, atoms: Atoms, stress: bool = False) -> dict:
        graph = helpers.graph_of(atoms, potential.cutoff, DTYPE)
        out = potential(graph, compute_forces=True, compute_stress=stress)
        return {k: v.detach() for k, v in out.items()}

    @staticmethod
    def energies(potential: Potential, structures: list[Atoms]) -> np.ndarray:
        """Energies of many structures, in one batch."""
        graph = collate([helpers.graph_of(a, potential.cutoff, DTYPE) for a in structures])
        with torch.no_grad():
            return potential(graph, compute_forces=False)[K.ENERGY].numpy()

    @classmethod
    def energy(cls, potential: Potential, atoms: Atoms) -> float:
        return float(cls.energies(potential, [atoms])[0])

    # ------------------------------------------------------------ derivatives

    @pytest.mark.parametrize("structure", ["ethanol", "copper"])
    def test_forces_equal_finite_differences(self, potential, structure):
        atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
        forces = self.evaluate(potential, atoms)[K.FORCES].numpy()
        assert np.abs(forces).max() > 1e-2, "forces too small for the check to mean anything"
        step = 1e-4
        displaced = []
        for atom in range(len(atoms)):
            for axis in range(3):
                for sign in (1.0, -1.0):
                    copy = atoms.copy()
                    copy.positions[atom, axis] += sign * step
                    displaced.append(copy)
        plus, minus = self.energies(potential, displaced).reshape(-1, 2).T
        numerical = (-(plus - minus) / (2 * step)).reshape(len(atoms), 3)
        np.testing.assert_allclose(forces, numerical, rtol=0, atol=1e-6)

    def test_stress_equals_finite_strain_derivative(self, potential):
        atoms = helpers.copper()
        atoms.calc = MLFFCalculator(potential)
        stress = atoms.get_stress(voigt=True)
        assert np.abs(stress).max() > 1e-3, "stress too small for the check to mean anything"
        numerical = calculate_numerical_stress(atoms, eps=1e-5, voigt=True)
        np.testing.assert_allclose(stress, numerical, rtol=0, atol=1e-7)

    # ------------------------------------------------------------ symmetries

    @pytest.mark.parametrize("proper", [True, False], ids=["rotation", "rotoreflection"])
    @pytest.mark.parametrize("structure", ["ethanol", "copper"])
    def test_rotation_invariance(self, potential, structure, proper):
        atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
        before = self.evaluate(potential, atoms, stress=atoms.pbc.all())
        for seed in range(3):
            rotation = random_rotation(seed, proper)
            assert np.isclose(np.linalg.det(rotation), 1.0 if proper else -1.0)
            after = self.evaluate(potential, transformed(atoms, rotation), stress=atoms.pbc.all())
            e0, e1 = float(before[K.ENERGY][0]), float(after[K.ENERGY][0])
            assert abs(e1 - e0) <= 1e-10 * abs(e0)
            r = torch.tensor(rotation, dtype=DTYPE)
            torch.testing.assert_close(
                after[K.FORCES], before[K.FORCES] @ r.T, rtol=0, atol=1e-10
            )
            if K.STRESS in before:
                torch.testing.assert_close(
                    after[K.STRESS][0], r @ before[K.STRESS][0] @ r.T, rtol=0, atol=1e-10
                )

    @pytest.mark.parametrize("structure", ["ethanol", "copper"])
    def test_translation_invariance(self, potential, structure):
        atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
        before = self.evaluate(potential, atoms)
        after = self.evaluate(potential, transformed(atoms, np.eye(3), (1.3, -2.7, 0.45)))
        torch.testing.assert_close(after[K.ENERGY], before[K.ENERGY], rtol=1e-12, atol=0)
        torch.testing.assert_close(after[K.FORCES], before[K.FORCES], rtol=0, atol=1e-10)

    @pytest.mark.parametrize("structure", ["ethanol", "copper"])
    def test_permutation_invariance(self, potential, structure):
        atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
        order = np.random.default_rng(7).permutation(len(atoms))
        assert (order != np.arange(len(atoms))).any()
        before = self.evaluate(potential, atoms)
        after = self.evaluate(potential, atoms[order])
        torch.testing.assert_close(after[K.ENERGY], before[K.ENERGY], rtol=1e-12, atol=0)
        torch.testing.assert_close(after[K.FORCES], before[K.FORCES][order], rtol=0, atol=1e-10)
        torch.testing.assert_close(
            after[K.NODE_ENERGY], before[K.NODE_ENERGY][order], rtol=0, atol=1e-10
        )

    # -------------------------------------------------------- periodic images

    @pytest.mark.parametrize(
        "cell, repeat",
        [("cubic", (2, 1, 1)), ("cubic", (2, 2, 2)), ("primitive", (2, 2, 2))],
        ids=["cubic-2x1x1", "cubic-2x2x2", "primitive-2x2x2"],
    )
    def test_supercell_is_extensive(self, potential, cell, repeat):
        atoms = helpers.copper(seed=11, cubic=cell == "cubic")
        if cell == "primitive":  # every cell vector (2.5 Å) is shorter than the cutoff
            assert (atoms.cell.lengths() < potential.cutoff).all()
        n = int(np.prod(repeat))
        single = self.evaluate(potential, atoms, stress=True)
        supercell = self.evaluate(potential, atoms.repeat(repeat), stress=True)
        torch.testing.assert_close(
            supercell[K.ENERGY], n * single[K.ENERGY], rtol=1e-12, atol=0
        )
        forces = supercell[K.FORCES].reshape(n, len(atoms), 3)
        torch.testing.assert_close(forces, single[K.FORCES].expand(n, -1, -1), rtol=0, atol=1e-10)
        torch.testing.assert_close(supercell[K.STRESS], single[K.STRESS], rtol=0, atol=1e-10)

    def test_cutoff_longer_than_cell_sees_several_images(self, potential):
        # one atom in a small cell: all its neighbours are its own periodic images
        atoms = bulk("Cu", "sc", a=2.0)
        graph = helpers.graph_of(atoms, potential.cutoff)
        assert graph[K.EDGE_INDEX].shape[1] > 6
        lone, crystal, supercell = self.energies(
            potential, [Atoms("Cu"), atoms, atoms.repeat((1, 2, 3))]
        )
        assert abs(crystal - lone) > 1e-6  # the images interact
        assert supercell == pytest.approx(6 * crystal, rel=1e-12)

    # ------------------------------------------------------------- batching

    def test_batch_equals_single(self, potential):
        structures = [helpers.ethanol(), helpers.copper(), helpers.water()]
        graphs = [helpers.graph_of(a, potential.cutoff) for a in structures]
        singles = [potential(g, compute_stress=True) for g in graphs]
        batched = potential(collate(graphs), compute_stress=True)
        sizes = [len(a) for a in structures]
        per_structure_forces = torch.split(batched[K.FORCES], sizes)
        for i, (single, forces) in enumerate(zip(singles, per_structure_forces)):
            torch.testing.assert_close(
                batched[K.ENERGY][i], single[K.ENERGY][0], rtol=1e-13, atol=0
            )
            torch.testing.assert_close(forces, single[K.FORCES], rtol=0, atol=1e-12)
            torch.testing.assert_close(
                batched[K.STRESS][i], single[K.STRESS][0], rtol=0, atol=1e-12
            )
        assert batched[K.STRESS][0].abs().max() == 0  # molecules have no stress
        assert batched[K.STRESS][1].abs().max() > 0

    def test_no_gradient_across_structures(self, potential):
        first, second = helpers.ethanol(), helpers.copper()
        graph = collate([helpers.graph_of(a, potential.cutoff) for a in (first, second)])
        positions = graph[K.POSITIONS].clone().requires_grad_(True)
        graph[K.POSITIONS] = positions
        energy = potential(graph, compute_forces=False)[K.ENERGY]
        n = len(first)
        grad_first = torch.autograd.grad(energy[0], positions, retain_graph=True)[0]
        grad_second = torch.autograd.grad(energy[1], positions)[0]
        assert grad_first[:n].abs().max() > 0 and grad_second[n:].abs().max() > 0
        assert grad_first[n:].abs().max() == 0
        assert grad_second[:n].abs().max() == 0
        # moving the second structure leaves the forces on the first unchanged
        moved = second.copy()
        moved.rattle(0.2, seed=5)
        before = potential(graph)[K.FORCES][:n]
        graph_moved = collate([helpers.graph_of(a, potential.cutoff) for a in (first, moved)])
        torch.testing.assert_close(potential(graph_moved)[K.FORCES][:n], before, rtol=0, atol=0)

    # ------------------------------------------------------- cutoff, isolated

    def test_energy_continuous_across_cutoff(self, potential):
        cutoff = potential.cutoff

        def dimer(distance):
            return Atoms("CO", positions=[[0.0, 0.0, 0.0], [distance, 0.0, 0.0]])

        inside = self.evaluate(potential, dimer(cutoff - 1e-6))
        outside = self.evaluate(potential, dimer(cutoff + 1e-6))
        assert helpers.graph_of(dimer(cutoff - 1e-6), cutoff)[K.EDGE_INDEX].shape[1] == 2
        assert helpers.graph_of(dimer(cutoff + 1e-6), cutoff)[K.EDGE_INDEX].shape[1] == 0
        assert abs(float(inside[K.ENERGY][0] - outside[K.ENERGY][0])) < 1e-8
        assert float(inside[K.FORCES].abs().max()) < 1e-6
        assert float(outside[K.FORCES].abs().max()) == 0
        # and the pair does interact well inside the cutoff
        near = self.evaluate(potential, dimer(0.6 * cutoff))
        assert abs(float(near[K.ENERGY][0] - outside[K.ENERGY][0])) > 1e-6

    def test_separated_atoms_are_additive(self, potential):
        # beyond the cutoff, a structure's energy is the sum of its lone atoms' energies
        far = Atoms("CHOCu", positions=[[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]])
        lone = [Atoms(a.symbol, positions=[a.position]) for a in far]
        energies = self.energies(potential, [far, *lone])
        assert energies[0] == pytest.approx(energies[1:].sum(), abs=1e-12)
        out = self.evaluate(potential, far)
        assert float(out[K.FORCES].abs().max()) == 0
        # lone atoms of different elements differ (the E0s are used)
        assert len(set(np.round(energies[1:], 6))) == 4

    # -------------------------------------------------------------- model file

    def test_save_load_roundtrip(self, potential, tmp_path):
        path = save_model(potential, tmp_path / "model.mlff")
        loaded = load_model(path)
        assert loaded.dtype == DTYPE
        assert loaded.species == potential.species and loaded.cutoff == potential.cutoff
        structures = [helpers.ethanol(), helpers.copper()]
        graph = collate([helpers.graph_of(a, potential.cutoff) for a in structures])
        expected = potential(graph, compute_stress=True)
        got = loaded(graph, compute_stress=True)
        for key in (K.ENERGY, K.FORCES, K.STRESS, K.NODE_ENERGY):
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)

        single = load_model(path, dtype="float32")
        assert single.dtype == torch.float32
        graph32 = {k: v.float() if v.is_floating_point() else v for k, v in graph.items()}
        got32 = single(graph32, compute_stress=True)
        assert got32[K.ENERGY].dtype == torch.float64  # energies are summed in float64
        for key in (K.ENERGY, K.FORCES, K.STRESS):
            if key != K.ENERGY:
                assert got32[key].dtype == torch.float32
            torch.testing.assert_close(
                got32[key].double(), expected[key], rtol=1e-5, atol=1e-5
            )
