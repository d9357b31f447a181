"""Neighbour lists against ASE's: the same (i, j, shift) triples for every kind of cell."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

from mlff.data.neighbors import neighbor_list
from mlff.errors import DataError
from tests import helpers


def triclinic() -> Atoms:
    rng = np.random.default_rng(4)
    cell = np.array([[4.1, 0.0, 0.0], [1.3, 3.7, 0.0], [-0.9, 0.8, 4.4]])
    return Atoms("CuCuOH", scaled_positions=rng.random((4, 3)), cell=cell, pbc=True)


def mixed_pbc() -> Atoms:
    # atoms close to the z faces: along z they must not see each other's images
    atoms = triclinic()
    atoms.pbc = (True, True, False)
    atoms.positions[0, 2], atoms.positions[1, 2] = 0.2, 4.3
    return atoms


def small_cell() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6) * (1, 1, 2)  # cell vectors 2.5 Å < cutoff
    atoms.rattle(0.05, seed=3)
    return atoms


def rattled_molecule() -> Atoms:
    return helpers.ethanol()


CASES = {
    "molecule": (rattled_molecule, 2.5),
    "triclinic": (triclinic, 3.5),
    "mixed-pbc": (mixed_pbc, 3.5),
    "cutoff-longer-than-cell": (small_cell, 6.0),
    "one-atom-many-images": (lambda: bulk("Cu", "sc", a=1.5), 4.0),
}


def triples(i, j, shifts) -> list[tuple]:
    return sorted(zip(np.asarray(i).tolist(), np.asarray(j).tolist(),
                      map(tuple, np.rint(shifts).astype(int).tolist())))


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_pairs_as_ase(case):
    build, cutoff = CASES[case]
    atoms = build()
    edge_index, edge_shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    assert edge_index.dtype == np.int64 and edge_index.shape[0] == 2
    assert edge_shift.shape == (edge_index.shape[1], 3)
    np.testing.assert_array_equal(edge_shift, np.rint(edge_shift))  # integer shifts
    i, j, shifts = ase_neighbor_list("ijS", atoms, cutoff)
    assert len(i) > 0
    ours = triples(edge_index[0], edge_index[1], edge_shift)
    assert ours == triples(i, j, shifts)
    # the convention r_ij = pos[j] - pos[i] + S @ cell gives lengths below the cutoff
    vectors = (atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]]
               + edge_shift @ atoms.cell.array)
    lengths = np.linalg.norm(vectors, axis=1)
    assert (lengths < cutoff).all() and (lengths > 0).all()
    # nothing is shifted along a non-periodic direction
    assert (edge_shift[:, ~atoms.pbc] == 0).all()


def test_full_list_is_symmetric():
    atoms = triclinic()
    edge_index, edge_shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 3.5)
    forward = triples(edge_index[0], edge_index[1], edge_shift)
    backward = triples(edge_index[1], edge_index[0], -edge_shift)
    assert forward == backward


def test_several_images_of_one_atom():
    atoms = bulk("Cu", "sc", a=1.5)
    edge_index, edge_shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 3.1)
    # self-images within 3.1 Å of a 1.5 Å simple-cubic lattice, excluding the atom itself
    expected = sum(
        1 for s in np.ndindex(5, 5, 5)
        if 0 < np.linalg.norm((np.array(s) - 2) * 1.5) < 3.1
    )
    assert edge_index.shape[1] == expected
    assert (edge_index == 0).all()


def test_no_pairs_beyond_cutoff():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 3.0]])
    edge_index, edge_shift = neighbor_list(atoms.positions, np.zeros((3, 3)), atoms.pbc, 2.0)
    assert edge_index.shape == (2, 0) and edge_shift.shape == (0, 3)


def test_bad_periodic_cell_is_a_data_error():
    with pytest.raises(DataError, match="cell"):
        neighbor_list(np.zeros((2, 3)), np.zeros((3, 3)), np.array([True] * 3), 3.0)
