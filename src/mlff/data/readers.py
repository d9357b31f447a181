"""Read labelled structures from any file ASE can read (extxyz first).

Labels are looked up by configurable keys, first in the results of ASE's single-point
calculator (where ASE puts ``energy``/``forces``/``stress`` from an extxyz file), then in
``atoms.info`` (per structure) or ``atoms.arrays`` (per atom). Every problem raises a
:class:`~mlff.errors.DataError` naming the file and the frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import ase
import ase.io
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


def check_file(path: str | Path) -> Path:
    """``path`` as a Path, after checking that it is an existing, non-empty file or a
    deepmd/npy directory (see :mod:`mlff.data.deepmd`).

    Raises:
        DataError: naming the path and what is wrong with it.
    """
    from mlff.data.deepmd import TYPE_FILE, is_deepmd_dir

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file. Check the path.")
    if path.is_dir():
        if is_deepmd_dir(path):
            return path
        raise DataError(
            f"{path}: is a directory, not a structure file or a deepmd/npy data directory "
            f"(no {TYPE_FILE} in it or below it)."
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    return path


def iter_structures(
    path: str | Path,
    keys: LabelKeys = LabelKeys(),
    index: str | int | slice = ":",
    format: str | None = None,
    require: Sequence[str] = (),
) -> Iterator[Structure]:
    """Yield the labelled structures of a file one at a time (``ase.io.iread``).

    Only one frame is held in memory at a time, so files larger than memory can be
    streamed. Arguments, ``source`` and errors as :func:`read_structures`; the error for
    a file without structures is raised when the iteration ends. A deepmd/npy directory
    is read set by set (:func:`mlff.data.deepmd.iter_deepmd`).
    """
    from mlff.data.deepmd import FORMAT_NAMES, iter_deepmd

    path = check_file(path)
    if path.is_dir() or format in FORMAT_NAMES:
        yield from _select(iter_deepmd(path, require), index, path)
        return
    count = 0
    try:
        for frame, atoms in enumerate(ase.io.iread(path, index=index, format=format)):
            structure = structure_from_atoms(atoms, keys, f"{path}:{frame}", require)
            count += 1
            yield structure
    except DataError:
        raise
    except Exception as exc:  # ASE raises many kinds for unparsable input
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: cannot read frame {count} ({type(exc).__name__}: {detail}). "
            "The file may be truncated, corrupt or of another format; "
            "check it with `ase gui` or name the format."
        ) from None
    if count == 0:
        raise DataError(f"{path}: no structures found in the file.")


def read_structures(
    path: str | Path,
    keys: LabelKeys = LabelKeys(),
    index: str | int | slice = ":",
    format: str | None = None,
    require: Sequence[str] = (),
) -> list[Structure]:
    """Read every labelled structure of a file ASE can read.

    Args:
        path: the file (extxyz, ASE database, VASP OUTCAR, ...), or a deepmd/npy
            directory (one system, or a folder of systems; ``keys`` do not apply, its
            labels have fixed file names).
        keys: where each label is stored.
        index: which frames, as ASE understands it (``":"`` for all).
        format: ASE format name, or ``"deepmd/npy"``; guessed from the path when ``None``.
        require: labels each frame must have (``"energy"``, ``"forces"``, ``"stress"``).

    Returns:
        The structures in file order; ``source`` is ``"path:frame"`` (0-based frame;
        ``"system/set.NNN:frame"`` for deepmd/npy data).

    Raises:
        DataError: the file is missing or empty, a frame cannot be parsed, or a frame
            holds bad or missing labels. The message names the file and the frame.
    """
    return list(iter_structures(path, keys, index, format, require))


def _select(
    structures: Iterator[Structure], index: str | int | slice, path: Path
) -> Iterator[Structure]:
    """The frames of ``structures`` that ``index`` (as ASE understands it) picks."""
    if index in (":", slice(None)):
        yield from structures
        return
    from ase.io.formats import string2index

    selector = string2index(index) if isinstance(index, str) else index
    frames = list(structures)
    if isinstance(selector, int):
        if not -len(frames) <= selector < len(frames):
            raise DataError(f"{path}: has no frame {selector} ({len(frames)} frames).")
        yield frames[selector]
        return
    yield from frames[selector]
