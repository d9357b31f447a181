"""Read labelled structures from any file ASE can read (extxyz first).

Labels are looked up by configurable keys, first in the results of ASE's single-point
calculator (where ASE puts ``energy``/``forces``/``stress`` from an extxyz file), then in
``atoms.info`` (per structure) or ``atoms.arrays`` (per atom). Every problem raises a
:class:`~mlff.errors.DataError` naming the file and the frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import ase
import ase.io

# the structure and its checks live in mlff.data.structure (deepmd.py reads them too)
from mlff.data.structure import MIN_DISTANCE, LabelKeys, Structure, structure_from_atoms
from mlff.errors import DataError

__all__ = ["MIN_DISTANCE", "LabelKeys", "Structure", "check_file", "iter_structures",
           "read_structures", "structure_from_atoms"]


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
