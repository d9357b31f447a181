"""One labelled structure: the keys its labels are read under, and the checks that turn
an ``ase.Atoms`` into a :class:`Structure` (file readers: :mod:`mlff.data.readers` for
any ASE format, :mod:`mlff.data.deepmd` for deepmd/npy).

Labels are looked up by configurable keys, first in the results of ASE's single-point
calculator, then in ``atoms.info`` (per structure) or ``atoms.arrays`` (per atom). Every
problem raises a :class:`~mlff.errors.DataError` naming where the structure came from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import ase
import numpy as np
from ase.data import chemical_symbols
from ase.stress import voigt_6_to_full_3x3_stress

from mlff.errors import DataError

# closer than any two atoms of a real structure (H2's bond is 0.74 Å): two atoms this
# close are a duplicated atom, a broken file, or coordinates not in Å
MIN_DISTANCE = 0.3


@dataclass(frozen=True)
class LabelKeys:
    """Where to find each label in a structure file.

    Attributes:
        energy: total energy, eV.
        forces: per-atom forces, eV/Å.
        stress: stress, eV/Å³ (Voigt 6, 3x3 or 9 numbers; ASE sign).
        weight: per-structure loss weight (default 1 when absent).
        config_type: per-structure category name (default ``"Default"`` when absent).
    """

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    weight: str = "weight"
    config_type: str = "config_type"


@dataclass
class Structure:
    """One structure with its labels; ``None`` marks a missing label.

    Attributes:
        atoms: positions (Å), atomic numbers, cell (rows, Å) and pbc.
        energy: total energy, eV.
        forces: (N, 3) forces, eV/Å.
        stress: (3, 3) stress, eV/Å³, ASE sign.
        weight: loss weight of the structure.
        config_type: category name, used for per-category metrics and weights.
        source: ``"file:frame"``, for error messages and provenance.
    """

    atoms: ase.Atoms
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    weight: float = 1.0
    config_type: str = "Default"
    source: str = ""

    def __len__(self) -> int:
        return len(self.atoms)


def _lookup(atoms: ase.Atoms, key: str, per_atom: bool):
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    store = atoms.arrays if per_atom else atoms.info
    return store.get(key)


def _available_keys(atoms: ase.Atoms) -> list[str]:
    keys = set(atoms.info) | (set(atoms.arrays) - {"numbers", "positions"})
    if atoms.calc is not None:
        keys |= set(getattr(atoms.calc, "results", {}))
    return sorted(keys)


def _as_stress(value, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (6,):
        return voigt_6_to_full_3x3_stress(arr)
    if arr.shape in ((9,), (3, 3)):
        return arr.reshape(3, 3)
    raise DataError(f"{where}: stress has shape {arr.shape}; expected 6 (Voigt), 9 or 3x3 values.")


def _check_finite(arr: np.ndarray, what: str, where: str, per_atom: bool) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        if per_atom:
            atom = int(np.argwhere(bad.reshape(len(arr), -1).any(axis=1))[0, 0])
            raise DataError(
                f"{where}: {what} of atom {atom} is not a finite number (NaN or inf). "
                "Fix or remove this frame."
            )
        raise DataError(f"{where}: {what} is not a finite number (NaN or inf). Fix or remove this frame.")


def _check_distances(atoms: ase.Atoms, where: str) -> None:
    """Refuse atoms closer than :data:`MIN_DISTANCE` (periodic images included)."""
    from mlff.data.neighbors import neighbor_list

    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, MIN_DISTANCE)
    if edge_index.shape[1] == 0:
        return
    vectors = (atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]]
               + shifts @ atoms.cell.array)
    closest = int(np.argmin(np.linalg.norm(vectors, axis=1)))
    i, j = (int(k) for k in edge_index[:, closest])
    distance = float(np.linalg.norm(vectors[closest]))
    if i == j:
        raise DataError(
            f"{where}: atom {i} is {distance:.3f} Å from its own periodic image: a periodic "
            f"cell vector is shorter than {MIN_DISTANCE} Å. Check the cell (and its units: Å)."
        )
    symbols = atoms.get_chemical_symbols()
    raise DataError(
        f"{where}: atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {distance:.3f} Å apart, "
        f"closer than {MIN_DISTANCE} Å: overlapping or duplicated atoms, or positions not in "
        "Å. Fix or remove this frame."
    )


def structure_from_atoms(
    atoms: ase.Atoms,
    keys: LabelKeys = LabelKeys(),
    source: str = "",
    require: Iterable[str] = (),
) -> Structure:
    """Convert one ``ase.Atoms`` into a :class:`Structure`, checking every value.

    Args:
        atoms: the structure; labels are read as described in the module docstring.
        keys: where each label is stored.
        source: ``"file:frame"`` used in error messages.
        require: labels (``"energy"``, ``"forces"``, ``"stress"``) that must be present.

    Raises:
        DataError: a required label is missing, a value is NaN/inf or of the wrong shape,
            the cell is degenerate, or two atoms are closer than :data:`MIN_DISTANCE` Å.
    """
    where = source or "structure"
    n = len(atoms)
    if n == 0:
        raise DataError(f"{where}: the structure has no atoms.")
    numbers = atoms.numbers
    if (numbers <= 0).any() or (numbers >= len(chemical_symbols)).any():
        atom = int(np.argwhere((numbers <= 0) | (numbers >= len(chemical_symbols)))[0, 0])
        raise DataError(f"{where}: atom {atom} has no valid element (atomic number {numbers[atom]}).")
    _check_finite(atoms.positions, "the position", where, per_atom=True)
    if atoms.pbc.any():
        _check_finite(atoms.cell.array, "the cell", where, per_atom=False)
        periodic = atoms.cell.array[atoms.pbc]
        if np.linalg.matrix_rank(periodic) < int(atoms.pbc.sum()):
            raise DataError(
                f"{where}: the cell vectors along the periodic directions {atoms.pbc.tolist()} "
                "are zero or linearly dependent. Give a valid cell or set pbc to False."
            )

    _check_distances(atoms, where)

    structure = Structure(atoms=ase.Atoms(numbers=numbers, positions=atoms.positions,
                                          cell=atoms.cell, pbc=atoms.pbc), source=where)
    energy = _lookup(atoms, keys.energy, per_atom=False)
    if energy is not None:
        try:
            structure.energy = float(energy)
        except (TypeError, ValueError):
            raise DataError(f"{where}: energy '{keys.energy}' = {energy!r} is not a number.") from None
        if not math.isfinite(structure.energy):
            raise DataError(f"{where}: energy '{keys.energy}' is {structure.energy}. Fix or remove this frame.")
    forces = _lookup(atoms, keys.forces, per_atom=True)
    if forces is not None:
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (n, 3):
            raise DataError(f"{where}: forces '{keys.forces}' have shape {forces.shape}; expected ({n}, 3).")
        _check_finite(forces, f"the force '{keys.forces}'", where, per_atom=True)
        structure.forces = forces
    stress = _lookup(atoms, keys.stress, per_atom=False)
    if stress is not None:
        structure.stress = _as_stress(stress, where)
        _check_finite(structure.stress, f"stress '{keys.stress}'", where, per_atom=False)
    weight = atoms.info.get(keys.weight, 1.0)
    try:
        structure.weight = float(weight)
    except (TypeError, ValueError):
        raise DataError(f"{where}: weight '{keys.weight}' = {weight!r} is not a number.") from None
    if not math.isfinite(structure.weight) or structure.weight < 0:
        raise DataError(f"{where}: weight '{keys.weight}' = {weight!r} must be a finite number >= 0.")
    structure.config_type = str(atoms.info.get(keys.config_type, "Default"))

    for label in require:
        if getattr(structure, label) is None:
            key = getattr(keys, label)
            raise DataError(
                f"{where}: no {label} label under the key '{key}'. Keys present: "
                f"{', '.join(_available_keys(atoms)) or 'none'}. Set the right key "
                f"(data.keys.{label} in a training config) or remove the frame."
            )
    return structure
