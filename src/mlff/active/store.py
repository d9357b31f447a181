"""The labelled-data store: every reference label (and every failure) on an ASE database.

One row per structure, found by :func:`structure_key`. A SQLite file by default
(``labels.db``); any ASE database URL works the same way (``postgresql://user@host/db``,
``mysql://...``, with the ``ase-db-backends`` package). Each ``add_*`` call is one
committed transaction, so a run killed at any moment leaves every row it reported
readable, and a rerun can skip what is already stored.

Row layout (ASE key-value pairs, searchable with ``ase db labels.db status=failed``):

========================  ======================================================
``structure_key``         :func:`structure_key` of the structure
``status``                ``"ok"`` or ``"failed"``
``iteration``             active-learning iteration that asked for the label (int)
``oracle``                oracle name (``"pyscf:PBE/def2-SVP"``, ...)
``wall_time``             wall-clock time of the calculation, s
``reason``                why it failed (failed rows only)
other scalar provenance   whatever the caller passed (str, int, float, bool)
========================  ======================================================

The row's ``data`` holds ``provenance``: the non-scalar provenance, among it
``oracle_settings`` (the oracle's settings as JSON) and ``oracle_versions``. Energy
(eV), forces (eV/Å) and stress (eV/Å³, Voigt, ASE sign) are ASE's own columns.

A structure is stored once: adding a structure whose label is already stored raises
:class:`~mlff.errors.DataError`; a new label or failure for a structure that had failed
replaces the failure (one transaction). Write from one process at a time (the parent of
:func:`~mlff.oracles.label.label_many`); any number of processes may read.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import sqlite3
from pathlib import Path
from typing import Any

import ase.db
import ase.io
import numpy as np
from ase import Atoms
from ase.db.core import reserved_keys, str_represents, word

from mlff.errors import DataError
from mlff.oracles.compute import LabelResult

STATUS_OK = "ok"
STATUS_FAILED = "failed"
KEY = "structure_key"
_OWN_KEYS = frozenset({KEY, "status", "reason", "wall_time"})
_REQUIRED = ("iteration", "oracle")


def structure_key(atoms: Atoms) -> str:
    """SHA-256 (hex) of the atomic numbers, positions and cell rounded to 1e-8 Å, and pbc.

    Two structures whose coordinates agree to 1e-8 Å have the same key (extxyz keeps 8
    decimals, so a structure read back from such a file keeps its key). Labels, info and
    other arrays do not enter the key.
    """
    digest = hashlib.sha256(b"mlff-structure-key-v1")
    digest.update(np.asarray(atoms.numbers, dtype="<i8").tobytes())
    digest.update(np.rint(np.asarray(atoms.positions) * 1e8).astype("<i8").tobytes())
    digest.update(np.rint(atoms.cell.array * 1e8).astype("<i8").tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def _is_key_value(value: Any) -> bool:
    """Whether ASE can store ``value`` as a searchable key-value pair."""
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, numbers.Real):
        return bool(np.isfinite(float(value)))
    if isinstance(value, str):
        return not any(str_represents(value, t) for t in (bool, int, float))
    return False


def _json_text(value: Any) -> Any:
    """``value``, or what it encodes when it is the JSON text of a dict or list (as
    :meth:`LabelStore.write_extxyz` writes ``oracle_settings``)."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist")
                                 else repr(v)))


class LabelStore:
    """Labelled structures and failures on an ASE database (see the module docstring).

    Args:
        url: a SQLite file path (created if missing; ``.db`` suffix conventional) or an
            ASE database URL (``postgresql://...``).

    Raises:
        DataError: the path is a JSON database (not transactional), its folder does not
            exist, or the file is not an ASE SQLite database.
    """

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        if "://" in self.url:
            self._db = ase.db.connect(self.url, use_lock_file=False)
        else:
            path = Path(self.url)
            if path.suffix == ".json":
                raise DataError(f"{path}: a JSON database is rewritten on every write and is "
                                "not safe to kill; use a SQLite file (labels.db).")
            if not path.parent.is_dir():
                raise DataError(f"{path}: the folder {path.parent} does not exist; create it.")
            # no lock file: SQLite locks itself, and a writer killed while holding ASE's
            # lock file would block every later run
            self._db = ase.db.connect(str(path), type="db", use_lock_file=False)
        try:
            self._db.count()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.url}: not an ASE SQLite database ({exc}). Give a new or an "
                            "existing label store.") from None

    def __repr__(self) -> str:
        return f"LabelStore({self.url!r})"

    def __len__(self) -> int:
        """Number of rows (labelled and failed)."""
        return self._db.count()

    def count(self, status: str) -> int:
        """Number of rows with ``status`` (``"ok"`` or ``"failed"``)."""
        return self._db.count(status=status)

    def has(self, key: str) -> bool:
        """Whether the structure ``key`` has a row (labelled or failed)."""
        return self._db.count(**{KEY: key}) > 0

    def status(self, key: str) -> str | None:
        """``"ok"``, ``"failed"`` or ``None`` (not stored) for the structure ``key``."""
        row = self._row(key)
        return None if row is None else row.get("status")

    def statuses(self) -> dict[str, str]:
        """``{structure_key: status}`` of every row, in one query."""
        return {row.get(KEY): row.get("status") for row in self._db.select(include_data=False)}

    def _row(self, key: str) -> Any:
        rows = list(self._db.select(**{KEY: key}, include_data=False))
        return rows[0] if rows else None

    def _split_provenance(self, provenance: dict[str, Any]) -> tuple[dict, dict]:
        missing = [k for k in _REQUIRED if k not in provenance]
        if missing:
            raise ValueError(f"provenance lacks {', '.join(missing)}; pass at least "
                             "iteration (int) and oracle (name), e.g. oracle.provenance(i)")
        if isinstance(provenance["iteration"], bool) or not isinstance(
                provenance["iteration"], numbers.Integral):
            raise ValueError(f"provenance iteration must be an int, got "
                             f"{provenance['iteration']!r}")
        pairs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in provenance.items():
            if name in _OWN_KEYS or name in reserved_keys or not word.match(name):
                raise ValueError(f"provenance key {name!r} is reserved or not an identifier; "
                                 f"reserved here: {', '.join(sorted(_OWN_KEYS))} and ASE's "
                                 "own keys (energy, forces, ...)")
            if value is None:
                continue
            if _is_key_value(value):
                pairs[name] = value.item() if isinstance(value, np.generic) else value
            else:
                extra[name] = _json_safe(value)
        pairs["iteration"] = int(provenance["iteration"])
        return pairs, {"provenance": extra}

    def _write(self, atoms: Atoms, key: str, status: str, pairs: dict, data: dict) -> int:
        existing = self._row(key)
        if existing is not None and existing.get("status") == STATUS_OK:
            raise DataError(
                f"{self.url}: structure {key} is already labelled (row {existing.id}, "
                f"iteration {existing.get('iteration')}); a structure is stored once. Check "
                "store.has(key) before labelling it."
            )
        pairs = {**pairs, KEY: key, "status": status}
        return self._db.write(atoms, key_value_pairs=pairs, data=data,
                              id=None if existing is None else existing.id)

    def add_label(self, result: LabelResult, key: str, provenance: dict[str, Any]) -> int:
        """Store a successful label (one committed transaction); returns the row id.

        Args:
            result: an ``ok`` result; its atoms' calculator holds the labels.
            key: :func:`structure_key` of the labelled structure.
            provenance: at least ``iteration`` (int) and ``oracle`` (name); usually
                :meth:`mlff.oracles.Oracle.provenance`. Scalars become searchable
                key-value pairs, the rest (``oracle_settings``) goes to the row's data.

        Raises:
            DataError: the structure is already labelled (a stored failure is replaced).
            ValueError: ``result`` failed, or the provenance is incomplete or uses a
                reserved key.
        """
        if not result.ok or result.atoms is None or result.atoms.calc is None:
            raise ValueError(f"add_label needs a successful result; this one failed "
                             f"({result.reason}): use add_failure")
        pairs, data = self._split_provenance(provenance)
        pairs["wall_time"] = float(result.wall_time)
        return self._write(result.atoms, key, STATUS_OK, pairs, data)

    def add_failure(self, atoms: Atoms, key: str, reason: str, provenance: dict[str, Any],
                    wall_time: float | None = None) -> int:
        """Store a failed calculation (one committed transaction); returns the row id.

        Args:
            atoms: the structure that failed (its calculator, if any, is not stored).
            key: its :func:`structure_key`.
            reason: why it failed.
            provenance: as for :meth:`add_label`.
            wall_time: time spent before it failed, s.

        Raises:
            DataError: the structure is already labelled (a stored failure is replaced).
        """
        pairs, data = self._split_provenance(provenance)
        pairs["reason"] = " ".join(str(reason).split()) or "unknown"
        if not _is_key_value(pairs["reason"]):
            pairs["reason"] = f"failed: {pairs['reason']}"
        if wall_time is not None:
            pairs["wall_time"] = float(wall_time)
        clean = atoms.copy()
        clean.calc = None
        return self._write(clean, key, STATUS_FAILED, pairs, data)

    def add(self, result: LabelResult, atoms: Atoms, key: str,
            provenance: dict[str, Any]) -> int:
        """:meth:`add_label` or :meth:`add_failure` (of ``atoms``), as ``result`` says."""
        if result.ok:
            return self.add_label(result, key, provenance)
        return self.add_failure(atoms, key, result.reason or "unknown", provenance,
                                wall_time=result.wall_time)

    def _atoms(self, row: Any) -> Atoms:
        atoms = row.toatoms()
        info = {name: value for name, value in row.key_value_pairs.items() if name != "status"}
        info.update(row.get("data", {}).get("provenance", {}))
        atoms.info.update(info)
        return atoms

    def labelled(self, iteration: int | None = None) -> list[Atoms]:
        """The labelled structures, in the order they were stored.

        Args:
            iteration: only those labelled for this iteration; ``None``: all.

        Returns:
            Atoms with a ``SinglePointCalculator`` (``energy`` eV, ``forces`` (N, 3) eV/Å,
            ``stress`` Voigt eV/Å³ when computed) and the provenance in ``info``
            (``structure_key``, ``iteration``, ``oracle``, ``wall_time``,
            ``oracle_settings``, ...), as :func:`mlff.read_structures` reads them.
        """
        query: dict[str, Any] = {"status": STATUS_OK}
        if iteration is not None:
            query["iteration"] = int(iteration)
        return [self._atoms(row) for row in self._db.select(**query, sort="id")]

    def failures(self) -> list[Atoms]:
        """The structures whose calculation failed, with ``reason`` and provenance in info."""
        return [self._atoms(row) for row in self._db.select(status=STATUS_FAILED, sort="id")]

    def import_extxyz(self, path: str | Path, keys: set[str] | None = None) -> int:
        """Add the labels of an extxyz file written by :meth:`write_extxyz`, provenance kept.

        Labels already in this store are left as they are, so importing twice adds
        nothing; a file of labels made with the same oracle settings saves their DFT.

        Args:
            path: the extxyz file (energy, forces, and ``structure_key``, ``iteration``,
                ``oracle`` in each frame's info, as :meth:`write_extxyz` writes them).
            keys: only the frames with these structure keys; ``None``: every frame.

        Returns:
            How many labels were added.

        Raises:
            DataError: a frame lacks a label or its provenance, or its ``structure_key``
                is not that of its structure (the file was edited after it was written).
        """
        added = 0
        for index, atoms in enumerate(ase.io.read(path, ":", format="extxyz")):
            where = f"{path}: frame {index}"
            if atoms.calc is None or not {"energy", "forces"} <= set(atoms.calc.results):
                raise DataError(f"{where} has no energy and forces; import_extxyz takes the "
                                "labels a store wrote (LabelStore.write_extxyz)")
            info = dict(atoms.info)
            missing = [k for k in (KEY, *_REQUIRED) if k not in info]
            if missing:
                raise DataError(f"{where} lacks {', '.join(missing)} in its info; import_extxyz "
                                "takes the labels a store wrote (LabelStore.write_extxyz)")
            key = str(info.pop(KEY))
            if structure_key(atoms) != key:
                raise DataError(f"{where}: its structure_key is not that of its structure "
                                "(positions or cell edited after the file was written); "
                                "label it again instead")
            if (keys is not None and key not in keys) or self.status(key) == STATUS_OK:
                continue
            wall_time = float(info.pop("wall_time", 0.0))
            info.pop("status", None)
            provenance = {name: _json_text(value) for name, value in info.items()}
            self.add_label(LabelResult(True, atoms, None, wall_time), key, provenance)
            added += 1
        return added

    def write_extxyz(self, path: str | Path, iteration: int | None = None) -> int:
        """Write the labelled structures as extxyz; returns how many.

        Energy, forces and stress are written under the keys ``energy`` (info),
        ``forces`` (arrays) and ``stress`` (info, 3x3); the provenance goes to info,
        non-scalar entries (``oracle_settings``) as JSON text.
        """
        frames = self.labelled(iteration)
        for atoms in frames:
            for name, value in list(atoms.info.items()):
                if isinstance(value, (dict, list, tuple)):
                    atoms.info[name] = json.dumps(value, separators=(",", ":"))
        ase.io.write(path, frames, format="extxyz")
        return len(frames)
