"""Dataset statistics that set a model's normalisation: E0s, shift, scale, neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.data.readers import LabelKeys, read_structures
from mlff.errors import DataError


def _composition(dataset: GraphDataset, species: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(B, S) element counts and (B,) energies of the structures that have an energy."""
    column = {z: i for i, z in enumerate(species)}
    counts, energies = [], []
    for graph in dataset.graphs:
        if not bool(graph[K.HAS_ENERGY][0]):
            continue
        row = np.zeros(len(species))
        for z in graph[K.ATOMIC_NUMBERS].tolist():
            row[column[z]] += 1
        counts.append(row)
        energies.append(float(graph[K.ENERGY][0]))
    return np.array(counts).reshape(-1, len(species)), np.array(energies)


def e0s_least_squares(dataset: GraphDataset, species: Sequence[int]) -> dict[int, float]:
    """Per-element reference energies (eV) that best fit the total energies (least squares).

    Elements whose count never varies independently get the minimum-norm solution, so the
    fit is defined even for a single molecule type (then only the sum is meaningful).
    """
    counts, energies = _composition(dataset, species)
    if len(energies) == 0:
        raise DataError("cannot fit E0s: no structure in the training set has an energy label.")
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {int(z): float(e) for z, e in zip(species, e0)}


def e0s_from_file(path: str | Path, keys: LabelKeys = LabelKeys()) -> dict[int, float]:
    """Isolated-atom energies (eV) from a file of single-atom structures with energies."""
    e0s = {}
    for structure in read_structures(path, keys, require=("energy",)):
        if len(structure.atoms) != 1:
            raise DataError(
                f"{structure.source}: an isolated-atoms file must hold one atom per frame, "
                f"found {len(structure.atoms)}."
            )
        e0s[int(structure.atoms.numbers[0])] = float(structure.energy)
    return e0s


def check_e0s(e0s: dict[int, float], species: Sequence[int], origin: str) -> None:
    """Raise if an element of the training set has no E0."""
    missing = [chemical_symbols[z] for z in species if z not in e0s]
    if missing:
        raise DataError(
            f"{origin}: no isolated-atom energy for {', '.join(missing)}. Add it, or use "
            "e0s: least_squares."
        )


def energy_shift(dataset: GraphDataset, e0s: dict[int, float]) -> float:
    """Mean per-atom energy left after subtracting the E0s, eV/atom."""
    residuals = []
    for graph in dataset.graphs:
        if bool(graph[K.HAS_ENERGY][0]):
            numbers = graph[K.ATOMIC_NUMBERS].tolist()
            reference = sum(e0s[z] for z in numbers)
            residuals.append((float(graph[K.ENERGY][0]) - reference) / len(numbers))
    return float(np.mean(residuals)) if residuals else 0.0


def force_rms(dataset: GraphDataset) -> float:
    """Root mean square of the force components, eV/Å (1.0 if there are no forces)."""
    squares, count = 0.0, 0
    for graph in dataset.graphs:
        if bool(graph[K.HAS_FORCES][0]):
            squares += float((graph[K.FORCES] ** 2).sum())
            count += graph[K.FORCES].numel()
    return float(np.sqrt(squares / count)) if count and squares > 0 else 1.0


def mean_num_neighbors(dataset: GraphDataset) -> float:
    """Average number of neighbours per atom within the dataset's cutoff."""
    edges = sum(g[K.EDGE_INDEX].shape[1] for g in dataset.graphs)
    atoms = sum(g[K.POSITIONS].shape[0] for g in dataset.graphs)
    return edges / max(atoms, 1)


def per_atom_energy_std(dataset: GraphDataset, e0s: dict[int, float]) -> float:
    """Standard deviation of the per-atom energy after E0s, eV/atom."""
    values = [
        (float(g[K.ENERGY][0]) - sum(e0s[z] for z in g[K.ATOMIC_NUMBERS].tolist()))
        / g[K.POSITIONS].shape[0]
        for g in dataset.graphs
        if bool(g[K.HAS_ENERGY][0])
    ]
    return float(torch.tensor(values).std()) if len(values) > 1 else 1.0
