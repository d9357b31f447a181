"""One structure of the training data, kept in the model file as a starting point for MD.

``mlff train`` records the first training structure (elements, positions in Å, cell in
Å, periodicity) under ``training.example_structure`` of the model's metadata, so that
``mlff deploy`` can write a LAMMPS example that runs with the model's own kind of system
(a molecule in a box for a molecular model) when ASE knows no crystal for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from mlff.data import keys as K


def example_record(dataset: Any) -> dict[str, Any] | None:
    """The first structure of ``dataset`` (graph dicts) as plain JSON data, or None if empty."""
    if len(dataset) == 0:
        return None
    graph = dataset[0]
    pbc = [bool(p) for p in graph[K.PBC].reshape(3).tolist()]
    return {
        "numbers": [int(z) for z in graph[K.ATOMIC_NUMBERS].tolist()],
        "positions": [[round(float(x), 8) for x in row] for row in graph[K.POSITIONS].tolist()],
        "cell": [[float(x) for x in row] for row in graph[K.CELL].reshape(3, 3).tolist()],
        "pbc": pbc,
    }


def example_structure(metadata: dict[str, Any]) -> Atoms | None:
    """The training structure recorded in a model's metadata, or None (older files)."""
    record = (metadata.get("training") or {}).get("example_structure")
    if not record:
        return None
    return Atoms(numbers=record["numbers"], positions=np.asarray(record["positions"]),
                 cell=np.asarray(record["cell"]), pbc=record["pbc"])
