"""Builders shared by the tests: tiny potentials and graph dicts, made in code.

Everything here is deterministic (explicit seeds) and needs no downloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.data import structure_from_atoms, structure_to_graph
from mlff.data.graph import Graph
from mlff.models import Potential, build_model, get_architecture

# H, C, O, Cu: enough for the molecules and the metal used in the tests
SPECIES: tuple[int, ...] = (1, 6, 8, 29)
# exactly representable in float32, so E0 checks hold in both dtypes
E0S: tuple[float, ...] = (-0.5, -1.25, -2.0, -3.5)

# tiny configurations of every architecture; a new architecture adds one entry here
TINY_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "schnet": {"num_features": 16, "num_filters": 16, "num_layers": 2, "num_radial": 16},
    "painn": {"num_features": 12, "num_layers": 2, "num_radial": 8},
    "nequip": {"num_features": 8, "num_layers": 2, "l_max": 2, "num_radial": 6,
               "radial_mlp_width": 16, "avg_num_neighbors": 12.0},
    "allegro": {"num_layers": 2, "l_max": 2, "num_tensor_features": 4, "latent_dim": 16,
                "num_radial": 6, "avg_num_neighbors": 12.0},
    "sevennet": {"num_features": 8, "num_layers": 2, "l_max": 2, "num_radial": 6,
                 "radial_mlp": [16], "avg_num_neighbors": 12.0},
    "mace": {"num_channels": 8, "max_L": 1, "correlation": 3, "num_interactions": 2,
             "radial_mlp": [16, 16], "readout_mlp": 8, "avg_num_neighbors": 4.0},
    # avg_num_neighbors 1: DeepPot divides by 4x it, and larger sums leave the untrained
    # tiny model's forces on rattled Cu too small for the finite-difference checks
    "deeppot": {"rcut_smth": 1.0, "embedding_neurons": [4, 8], "axis_neurons": 4,
                "fitting_neurons": [16, 16], "avg_num_neighbors": 1.0},
}


def full_hyperparameters(architecture: str, cutoff: float = 4.0, **overrides) -> dict[str, Any]:
    """The validated, complete hyperparameters of a tiny model of ``architecture``."""
    raw = {"architecture": architecture, "cutoff": cutoff,
           **TINY_HYPERPARAMETERS[architecture], **overrides}
    return get_architecture(architecture).Config.model_validate(raw).model_dump()


def build_potential(
    architecture: str,
    cutoff: float = 4.0,
    species: Sequence[int] = SPECIES,
    e0s: Sequence[float] = E0S,
    scale: float = 1.0,
    shift: float = 0.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **overrides,
) -> Potential:
    """A randomly initialised tiny Potential (eval mode, ``dtype``)."""
    hyperparameters = full_hyperparameters(architecture, cutoff, **overrides)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(hyperparameters, len(species))
    potential = Potential(model, hyperparameters, list(species), list(e0s), scale, shift)
    return potential.to(dtype).eval()


def graph_of(atoms: Atoms, cutoff: float, dtype: torch.dtype = torch.float64) -> Graph:
    """The graph dict of ``atoms`` (labels ignored) in ``dtype``."""
    graph = structure_to_graph(structure_from_atoms(atoms), cutoff)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in graph.items()}


def ethanol(seed: int = 1, amplitude: float = 0.1) -> Atoms:
    """A rattled ethanol molecule (non-periodic, zero cell)."""
    atoms = molecule("CH3CH2OH")
    atoms.rattle(amplitude, seed=seed)
    return atoms


def water(seed: int = 2, amplitude: float = 0.05) -> Atoms:
    """A rattled water molecule in a box without periodicity."""
    atoms = molecule("H2O")
    atoms.rattle(amplitude, seed=seed)
    return atoms


def copper(seed: int = 3, amplitude: float = 0.1, cubic: bool = True, strain: bool = True) -> Atoms:
    """Rattled fcc Cu (a = 3.6 Å), optionally with a small shear of the cell."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=cubic)
    if strain:
        deformation = np.eye(3) + 0.03 * np.random.default_rng(seed).standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    atoms.rattle(amplitude, seed=seed)
    return atoms


def with_random_labels(atoms: Atoms, seed: int = 0, stress: bool | None = None) -> Atoms:
    """Attach random energy/forces (and stress for periodic cells) as a SinglePointCalculator."""
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    results = {"energy": float(rng.normal(-3.0 * len(atoms), 1.0)),
               "forces": rng.normal(size=(len(atoms), 3))}
    if stress if stress is not None else atoms.pbc.all():
        results["stress"] = rng.normal(scale=0.01, size=6)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def assert_forces_are_minus_energy_gradient(
    make_calculator, atoms: Atoms, components: Sequence[tuple[int, int]] = ((0, 0), (3, 1), (8, 2)),
    delta: float = 1e-5, tolerance: float = 1e-6,
) -> None:
    """The forces of ``make_calculator()`` on ``atoms`` equal -dE/dx by central finite
    differences (step ``delta`` Å) for each (atom, axis) of ``components``, within
    ``tolerance`` eV/Å. A fresh calculator per displaced copy, so no cache answers."""
    atoms = atoms.copy()
    atoms.calc = make_calculator()
    forces = atoms.get_forces()
    for atom, axis in components:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * delta
            moved.calc = make_calculator()
            energies.append(moved.get_potential_energy())
        numeric = -(energies[0] - energies[1]) / (2 * delta)
        assert abs(forces[atom, axis] - numeric) <= tolerance, (atom, axis, forces[atom, axis],
                                                                numeric)
