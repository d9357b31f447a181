"""DeePMD-kit's ``deepmd/npy`` data directories: read them as structures, write them.

One *system* is a directory of frames that share their atoms (number, order, elements)::

    type.raw          one integer type per atom (whitespace separated)
    type_map.raw      element symbol of each type, one per line (type k = line k)
    nopbc             optional, empty: the frames are not periodic
    set.000/          frames, in sets of up to set_size; read in numerical order
        coord.npy     (nframes, natoms*3) positions, Å
        box.npy       (nframes, 9) cell vectors as rows, Å (optional with nopbc)
        energy.npy    (nframes,) total energy, eV (optional)
        force.npy     (nframes, natoms*3) forces, eV/Å (optional)
        virial.npy    (nframes, 9) virial, eV (optional; ignored with nopbc)
        real_atom_types.npy  optional (nframes, natoms): per-frame types (DeePMD's
                      "mixed" layout); overrides type.raw

A directory that holds several systems in subdirectories (at any depth; DeePMD's
multi-system layout) is read system by system in sorted path order.

Units are eV and Å as in ASE. DeePMD's virial is ``Ξ = -∂E/∂ε`` (ε the strain), so the
ASE stress (positive under tension) is ``σ = -Ξ / V`` and, writing, ``Ξ = -σ V`` (the
convention of DeePMD-kit's own ASE calculator).

Every problem raises a :class:`~mlff.errors.DataError` naming the system, the set (and
file) and, for bad values, the frame.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import ase
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, chemical_symbols

from mlff.errors import DataError

FORMAT_NAMES = ("deepmd/npy", "deepmd")
TYPE_FILE = "type.raw"
TYPE_MAP_FILE = "type_map.raw"
NOPBC_FILE = "nopbc"
_LABELS = ("energy", "forces", "stress")
_LABEL_FILES = {"energy": "energy.npy", "forces": "force.npy", "stress": "virial.npy"}


def _natural_key(path: Path) -> list:
    """Sort key with numbers compared as numbers: set.999 before set.1000."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def deepmd_systems(path: str | Path) -> list[Path]:
    """The system directories (those holding ``type.raw``) at or below ``path``, sorted."""
    path = Path(path)
    if not path.is_dir():
        return []
    if (path / TYPE_FILE).is_file():
        return [path]
    return sorted((p.parent for p in path.rglob(TYPE_FILE) if p.is_file()), key=_natural_key)


def is_deepmd_dir(path: str | Path) -> bool:
    """Whether ``path`` is a deepmd/npy system or a directory of such systems."""
    return bool(deepmd_systems(path))


def _set_dirs(system: Path) -> list[Path]:
    return sorted((p for p in system.glob("set.*") if p.is_dir()), key=_natural_key)


def _read_types(system: Path) -> tuple[np.ndarray, list[str]]:
    type_file = system / TYPE_FILE
    try:
        types = np.loadtxt(type_file, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise DataError(f"{type_file}: cannot read the atom types ({exc}); expected one "
                        "integer per atom.") from None
    if types.size == 0:
        raise DataError(f"{type_file}: no atoms (the file is empty).")
    map_file = system / TYPE_MAP_FILE
    if not map_file.is_file():
        raise DataError(
            f"{system}: no {TYPE_MAP_FILE}. mlff needs the element of each atom type: write "
            f"one element symbol per line into {map_file} (line k is type k)."
        )
    type_map = map_file.read_text().split()
    if not type_map:
        raise DataError(f"{map_file}: the file is empty; expected one element symbol per type.")
    unknown = [s for s in type_map if s not in atomic_numbers or atomic_numbers[s] == 0]
    if unknown:
        raise DataError(f"{map_file}: {unknown[0]!r} is not an element symbol.")
    _check_types(types, type_map, str(type_file))
    return types, type_map


def _check_types(types: np.ndarray, type_map: list[str], where: str) -> None:
    bad = (types < 0) | (types >= len(type_map))
    if bad.any():
        atom = int(np.argwhere(bad.reshape(-1))[0, 0])
        raise DataError(
            f"{where}: atom {atom % types.shape[-1]} has type {int(types.reshape(-1)[atom])}, but "
            f"{TYPE_MAP_FILE} names {len(type_map)} types (0..{len(type_map) - 1})."
        )


def _load(set_dir: Path, name: str, required: bool, frames: int | None, width: int | None,
          what: str) -> np.ndarray | None:
    """``set_dir/name`` as (frames, width) float64 (or (frames,) when width is None)."""
    file = set_dir / name
    if not file.is_file():
        if required:
            raise DataError(f"{set_dir}: no {name} ({what}).")
        return None
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: cannot read it as a .npy array ({exc}).") from None
    nframes = array.shape[0] if array.ndim else 0
    if frames is not None and nframes != frames:
        raise DataError(f"{file}: holds {nframes} frames, but coord.npy holds {frames}.")
    expected = (nframes,) if width is None else (nframes, width)
    if array.size != int(np.prod(expected)) or array.ndim == 0:
        shape = "(nframes,)" if width is None else f"(nframes, {width})"
        raise DataError(f"{file}: has shape {array.shape}; expected {shape} for {what}.")
    return array.reshape(expected)


def _iter_system(system: Path, require: Sequence[str]) -> Iterator:
    from mlff.data.structure import structure_from_atoms

    types, type_map = _read_types(system)
    natoms = len(types)
    numbers_of_type = np.array([atomic_numbers[s] for s in type_map])
    periodic = not (system / NOPBC_FILE).exists()
    sets = _set_dirs(system)
    if not sets:
        raise DataError(
            f"{system}: no set.* folders with frames (expected set.000/coord.npy, ...)."
        )
    for set_dir in sets:
        coords = _load(set_dir, "coord.npy", True, None, 3 * natoms,
                       f"the positions of the {natoms} atoms of {TYPE_FILE}")
        frames = len(coords)
        box = _load(set_dir, "box.npy", periodic, frames, 9,
                    f"the cell of each frame; for non-periodic frames add an empty {NOPBC_FILE} "
                    f"file to {system}")
        energy = _load(set_dir, "energy.npy", False, frames, None, "one energy per frame")
        force = _load(set_dir, "force.npy", False, frames, 3 * natoms,
                      f"the forces on the {natoms} atoms of {TYPE_FILE}")
        virial = _load(set_dir, "virial.npy", False, frames, 9, "a 3x3 virial per frame")
        if not periodic:
            virial = None  # no stress for a non-periodic system (DeePMD ignores it too)
        real_types = None
        if (set_dir / "real_atom_types.npy").is_file():
            real_types = _load(set_dir, "real_atom_types.npy", True, frames, natoms,
                               "the type of each atom in each frame").astype(np.int64)
            _check_types(real_types, type_map, str(set_dir / "real_atom_types.npy"))
        present = {"energy": energy, "forces": force, "stress": virial}
        for label in require:
            if present[label] is None:
                name = _LABEL_FILES[label]
                nopbc_stress = label == "stress" and not periodic
                detail = " (a nopbc system has no stress)" if nopbc_stress else ""
                raise DataError(f"{set_dir}: no {name}, but every frame needs a {label} "
                                f"label{detail}.")
        for frame in range(frames):
            where = f"{set_dir}:{frame}"
            frame_types = types if real_types is None else real_types[frame]
            cell = box[frame].reshape(3, 3) if box is not None else np.zeros((3, 3))
            atoms = ase.Atoms(numbers=numbers_of_type[frame_types],
                              positions=coords[frame].reshape(natoms, 3).astype(np.float64),
                              cell=cell.astype(np.float64), pbc=periodic)
            results = {}
            if energy is not None:
                results["energy"] = float(energy[frame])
            if force is not None:
                results["forces"] = force[frame].reshape(natoms, 3).astype(np.float64)
            if virial is not None:
                volume = abs(float(np.linalg.det(atoms.cell.array)))
                if volume <= 0:
                    raise DataError(f"{where}: the cell has zero volume, so the virial cannot be "
                                    "turned into a stress.")
                results["stress"] = -virial[frame].reshape(3, 3).astype(np.float64) / volume
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            yield structure_from_atoms(atoms, source=where, require=require)


def iter_deepmd(path: str | Path, require: Sequence[str] = ()) -> Iterator:
    """Yield the labelled :class:`~mlff.data.readers.Structure` s of a deepmd/npy directory.

    Args:
        path: a system directory, or a directory of systems (read in sorted order).
        require: labels (``"energy"``, ``"forces"``, ``"stress"``) every frame must have.

    Each structure's ``source`` is ``"SYSTEM/set.NNN:FRAME"`` (frame within the set).
    Only one set is in memory at a time.

    Raises:
        DataError: naming the system, set, file and frame of the problem.
    """
    path = Path(path)
    systems = deepmd_systems(path)
    if not systems:
        raise DataError(f"{path}: not a deepmd/npy directory (no {TYPE_FILE} in it or below it).")
    count = 0
    for system in systems:
        for structure in _iter_system(system, tuple(require)):
            count += 1
            yield structure
    if count == 0:
        raise DataError(f"{path}: no frames found in the deepmd/npy data.")


def read_deepmd_dir(path: str | Path, require: Sequence[str] = ()) -> list:
    """Every labelled structure of a deepmd/npy directory (see :func:`iter_deepmd`)."""
    return list(iter_deepmd(path, require))


def write_deepmd_dir(
    structures: Iterable,
    path: str | Path,
    type_map: Sequence[str] | None = None,
    set_size: int = 5000,
) -> list[Path]:
    """Write structures (or ``ase.Atoms`` with labels) as deepmd/npy system(s) under ``path``.

    Frames with the same atoms (elements in the same order), the same periodicity and the
    same labels form one system. When all frames form one system it is written to
    ``path`` itself; otherwise each goes to ``path/sys.NNN`` (in order of first
    appearance), DeePMD's multi-system layout, and reading ``path`` back yields the
    frames grouped by system. Values are written in float64; the stress is stored as the
    virial ``-stress * volume``; weights and config_types are not stored (the format has
    no place for them).

    Args:
        structures: :class:`~mlff.data.readers.Structure` s or ``ase.Atoms`` (labels read
            from their calculator, info and arrays as for extxyz).
        path: output directory; must not exist or be empty.
        type_map: element symbols of the types; default: every element present, by
            atomic number.
        set_size: frames per ``set.NNN`` folder.

    Returns:
        The system directories written.

    Raises:
        DataError: ``path`` is not empty, a structure is periodic along only some
            directions (deepmd/npy knows only fully periodic or non-periodic frames), or
            ``type_map`` lacks an element.
    """
    from mlff.data.structure import Structure, structure_from_atoms

    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DataError(f"{path}: exists and is not an empty directory; choose a new one.")
    items = [s if isinstance(s, Structure) else structure_from_atoms(s, source=f"structure {i}")
             for i, s in enumerate(structures)]
    if not items:
        raise DataError(f"{path}: no structures to write.")
    if set_size < 1:
        raise ValueError(f"set_size must be at least 1, got {set_size}")
    elements = sorted({int(z) for s in items for z in s.atoms.numbers})
    symbols = list(type_map) if type_map is not None else [chemical_symbols[z] for z in elements]
    missing = [chemical_symbols[z] for z in elements if chemical_symbols[z] not in symbols]
    if missing:
        raise DataError(f"type_map {symbols} lacks the element(s) {', '.join(missing)}.")
    type_of = {atomic_numbers[s]: k for k, s in enumerate(symbols)}

    groups: dict[tuple, list] = {}
    for index, structure in enumerate(items):
        pbc = structure.atoms.pbc
        if pbc.any() and not pbc.all():
            raise DataError(
                f"{structure.source or f'structure {index}'}: periodic along {pbc.tolist()} only; "
                "deepmd/npy holds fully periodic or non-periodic frames."
            )
        key = (tuple(int(z) for z in structure.atoms.numbers), bool(pbc.all()),
               *(getattr(structure, label) is not None for label in _LABELS))
        groups.setdefault(key, []).append(structure)

    path.mkdir(parents=True, exist_ok=True)
    single = len(groups) == 1
    written = []
    for number, ((numbers, periodic, *_), frames) in enumerate(groups.items()):
        system = path if single else path / f"sys.{number:03d}"
        _write_system(system, frames, [type_of[z] for z in numbers], symbols, periodic, set_size)
        written.append(system)
    return written


def _write_system(system: Path, frames: list, types: list[int], symbols: list[str],
                  periodic: bool, set_size: int) -> None:
    system.mkdir(parents=True, exist_ok=True)
    (system / TYPE_FILE).write_text("".join(f"{t}\n" for t in types))
    (system / TYPE_MAP_FILE).write_text("".join(f"{s}\n" for s in symbols))
    if not periodic:
        (system / NOPBC_FILE).write_text("")
    for number, start in enumerate(range(0, len(frames), set_size)):
        chunk = frames[start:start + set_size]
        set_dir = system / f"set.{number:03d}"
        set_dir.mkdir()
        np.save(set_dir / "coord.npy", np.stack([s.atoms.positions.reshape(-1) for s in chunk]))
        np.save(set_dir / "box.npy", np.stack([s.atoms.cell.array.reshape(-1) for s in chunk]))
        first = chunk[0]
        if first.energy is not None:
            np.save(set_dir / "energy.npy", np.array([s.energy for s in chunk], dtype=np.float64))
        if first.forces is not None:
            np.save(set_dir / "force.npy", np.stack([s.forces.reshape(-1) for s in chunk]))
        if first.stress is not None and periodic:
            virial = [-s.stress * abs(np.linalg.det(s.atoms.cell.array)) for s in chunk]
            np.save(set_dir / "virial.npy", np.stack([v.reshape(-1) for v in virial]))
