"""What a data file holds: counts of structures, atoms, elements, labels and config_types.

Works on packed data sets (read from their per-structure arrays and attributes, without
touching the per-atom data) and on any file ASE reads (streamed, one frame at a time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.data import chemical_symbols

from mlff.data import keys as K
from mlff.data.dataset import file_fingerprint
from mlff.data.neighbors import neighbor_list
from mlff.data.packed import PackedDataset, is_packed
from mlff.data.readers import LabelKeys, iter_structures

_ROWS = 1 << 20  # per-structure rows read at once


def describe(
    path: str | Path, keys: LabelKeys = LabelKeys(), cutoff: float | None = None
) -> dict[str, Any]:
    """A summary of the data file ``path`` as a JSON-ready dict.

    Keys: ``path``, ``format`` (``"packed"`` or ``"ase"``), ``structures``, ``atoms``,
    ``elements`` (symbol: atoms), ``labels`` (label: structures that have it),
    ``cutoff`` (Å; for an ASE file the ``cutoff`` argument, else ``None``),
    ``mean_neighbors`` (per atom within the cutoff; ``None`` without one),
    ``config_types`` (name: structures), ``sources`` (``{"path", "sha256", "frames"}``),
    ``fingerprint``.

    Args:
        path: a packed data set (``.h5``/``.hdf5``) or any file ASE reads.
        keys: where the labels are stored (ASE files; a packed file has its own).
        cutoff: for an ASE file, the radius of the neighbour counts, Å.

    Raises:
        DataError: the file is missing, unreadable or holds bad labels.
    """
    if is_packed(path):
        return _describe_packed(PackedDataset(path))
    counts = np.zeros(len(chemical_symbols), dtype=np.int64)
    labels = {"energy": 0, "forces": 0, "stress": 0}
    config_types: dict[str, int] = {}
    structures = atoms = edges = 0
    for structure in iter_structures(path, keys):
        structures += 1
        atoms += len(structure.atoms)
        counts += np.bincount(structure.atoms.numbers, minlength=len(counts))
        for label in labels:
            labels[label] += getattr(structure, label) is not None
        config_types[structure.config_type] = config_types.get(structure.config_type, 0) + 1
        if cutoff is not None:
            edge_index, _ = neighbor_list(structure.atoms.positions, structure.atoms.cell.array,
                                          structure.atoms.pbc, cutoff)
            edges += edge_index.shape[1]
    fingerprint = file_fingerprint(path)
    return {
        "path": str(path),
        "format": "ase",
        "structures": structures,
        "atoms": atoms,
        "elements": {chemical_symbols[z]: int(c) for z, c in enumerate(counts) if c},
        "labels": labels,
        "cutoff": cutoff,
        "mean_neighbors": edges / max(atoms, 1) if cutoff is not None else None,
        "config_types": dict(sorted(config_types.items())),
        "sources": [{"path": str(path), "sha256": fingerprint, "frames": structures}],
        "fingerprint": fingerprint,
    }


def _describe_packed(dataset: PackedDataset) -> dict[str, Any]:
    store = dataset._store
    handle = store.handle()
    n = len(dataset)
    labels = {"energy": 0, "forces": 0, "stress": 0}
    tags = np.zeros(len(dataset.config_types), dtype=np.int64)
    for start in range(0, n, _ROWS):
        stop = min(n, start + _ROWS)
        for label in labels:
            labels[label] += int(handle[f"has_{label}"][start:stop].sum())
        tags += np.bincount(handle[K.CONFIG_TYPE][start:stop], minlength=len(tags))
    atoms = int(store.num_atoms_array.sum())
    return {
        "path": str(dataset.path),
        "format": "packed",
        "structures": n,
        "atoms": atoms,
        "elements": {chemical_symbols[z]: c for z, c in sorted(store.element_counts.items())},
        "labels": labels,
        "cutoff": dataset.cutoff,
        "mean_neighbors": float(store.num_edges_array.sum()) / max(atoms, 1),
        "config_types": {name: int(c) for name, c in zip(dataset.config_types, tags, strict=True)},
        "sources": dataset.files,
        "fingerprint": dataset.fingerprint,
    }


def count_structures(path: str | Path, keys: LabelKeys = LabelKeys()) -> int:
    """Number of structures in a packed data set or an ASE-readable file (streamed)."""
    if is_packed(path):
        return len(PackedDataset(path))
    return sum(1 for _ in iter_structures(path, keys))
