"""Read the starting structure of an MD run from any file ASE can read."""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io

from mlff.data.deepmd import is_deepmd_dir
from mlff.data.readers import check_file, read_structures, structure_from_atoms
from mlff.errors import DataError


def read_start_structure(path: str | Path, frame: int = -1, format: str | None = None) -> ase.Atoms:
    """One frame of a structure file, checked, without labels or calculator.

    Args:
        path: any file ASE can read (extxyz, POSCAR, CIF, ASE database, ...), or a
            DeePMD-kit deepmd/npy directory.
        frame: 0-based frame index; negative counts from the end (-1: the last frame).
        format: ASE format name; guessed from the file when ``None``.

    Returns:
        Positions (Å), atomic numbers, cell (rows, Å) and pbc of that frame.

    Raises:
        DataError: the file is missing, empty or unreadable, has no such frame, or the
            frame holds invalid values (NaN positions, a degenerate cell). The message
            names the file and the frame.
    """
    path = check_file(path)
    where = f"{path}:{frame}"
    if is_deepmd_dir(path):  # the readers' frame selection, shared with training data
        return _bare(read_structures(path, index=frame)[0].atoms, where)
    try:
        atoms = ase.io.read(path, index=frame, format=format)
    except (IndexError, StopIteration):  # past the last frame
        raise DataError(f"{path}: has no frame {frame}.") from None
    except Exception as exc:  # ASE raises many kinds for unparsable input
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{where}: cannot read the structure ({type(exc).__name__}: {detail}). The file "
            "may be truncated, corrupt or of another format; check it with `ase gui`."
        ) from None
    if isinstance(atoms, list):  # some readers return a list even for one index
        if not atoms:
            raise DataError(f"{path}: has no frame {frame}.")
        atoms = atoms[0]
    return _bare(atoms, where)


def _bare(atoms: ase.Atoms, where: str) -> ase.Atoms:
    """``atoms`` without labels or calculator, with positions and cell checked."""
    bare = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                     pbc=atoms.pbc)
    return structure_from_atoms(bare, source=where).atoms
