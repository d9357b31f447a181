"""Dataset statistics that set a model's normalisation: E0s, shift, scale, neighbours.

Every statistic comes from one streaming pass over the structures (:func:`summarize`),
which keeps running sums and, per distinct composition, the count and the energy sums,
so a data set of any size is summarised in bounded memory. The functions accept any
iterable of graph dicts (a :class:`~mlff.data.dataset.GraphDataset`, a
:class:`~mlff.data.packed.PackedDataset`, a list) or a :class:`DataSummary`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from mlff.data import keys as K
from mlff.data.graph import Graph, collate
from mlff.data.readers import LabelKeys, read_structures
from mlff.errors import ConfigError, DataError, DataWarning


class DataSummary:
    """Running sums over structures, fed with (collated) graph dicts.

    Attributes:
        num_structures, num_atoms, num_edges: totals.
        species: atomic numbers seen.
        has_forces: whether any structure has forces.
        force_squares, force_components: sum of squared force components and their count.
        compositions: per distinct composition (tuple of (Z, count)) of the structures
            with an energy: [structures, pivot energy, Σ(E - pivot), Σ(E - pivot)²], eV.
    """

    def __init__(self) -> None:
        self.num_structures = 0
        self.num_atoms = 0
        self.num_edges = 0
        self.species: set[int] = set()
        self.has_forces = False
        self.force_squares = 0.0
        self.force_components = 0
        self.compositions: dict[tuple[tuple[int, int], ...], list[float]] = {}

    def update(self, batch: Graph) -> None:
        """Add the structures of a graph dict (one structure or a batch)."""
        numbers = batch[K.ATOMIC_NUMBERS].numpy()
        structure_of = batch[K.BATCH].numpy()
        num_structures = int(batch[K.NUM_ATOMS].shape[0])
        self.num_structures += num_structures
        self.num_atoms += len(numbers)
        self.num_edges += int(batch[K.EDGE_INDEX].shape[1])
        elements = np.unique(numbers)
        self.species.update(elements.tolist())
        has_forces = batch[K.HAS_FORCES].numpy()
        if has_forces.any():
            self.has_forces = True
            forces = batch[K.FORCES].numpy()[has_forces[structure_of]]
            self.force_squares += float(np.square(forces).sum())
            self.force_components += forces.size
        has_energy = batch[K.HAS_ENERGY].numpy()
        if not has_energy.any():
            return
        # element counts per structure, then one group per distinct composition
        counts = np.zeros((num_structures, len(elements)), dtype=np.int64)
        np.add.at(counts, (structure_of, np.searchsorted(elements, numbers)), 1)
        energies = batch[K.ENERGY].numpy().astype(np.float64)[has_energy]
        rows, group = np.unique(counts[has_energy], axis=0, return_inverse=True)
        group = group.reshape(-1)
        for g, row in enumerate(rows):
            values = energies[group == g]
            key = tuple((int(z), int(c)) for z, c in zip(elements, row, strict=True) if c)
            entry = self.compositions.get(key)
            if entry is None:
                entry = self.compositions[key] = [0, float(values[0]), 0.0, 0.0]
            deviations = values - entry[1]
            entry[0] += len(values)
            entry[2] += float(deviations.sum())
            entry[3] += float(np.square(deviations).sum())

    # --- the statistics ---
    def e0s_least_squares(self, species: Sequence[int]) -> dict[int, float]:
        """Per-element reference energies (eV) that best fit the total energies.

        Least squares over the structures; structures of the same composition enter as
        their mean energy weighted by their number, which has the same solutions. Elements
        whose count never varies independently get the minimum-norm solution, so the fit
        is defined even for a single molecule type (then only the sum is meaningful).
        """
        if not self.compositions:
            raise DataError("cannot fit E0s: no structure in the training set has an energy label.")
        column = {z: i for i, z in enumerate(species)}
        matrix = np.zeros((len(self.compositions), len(species)))
        target = np.zeros(len(self.compositions))
        for r, (composition, (count, pivot, s1, _)) in enumerate(self.compositions.items()):
            for z, c in composition:
                matrix[r, column[z]] = c
            weight = math.sqrt(count)
            matrix[r] *= weight
            target[r] = weight * (pivot + s1 / count)
        e0, *_ = np.linalg.lstsq(matrix, target, rcond=None)
        return {int(z): float(e) for z, e in zip(species, e0, strict=True)}

    def _residuals(self, e0s: dict[int, float]) -> Iterator[tuple[int, float, float, float]]:
        """Per composition: n, (pivot - Σ E0)/atoms, Σ(E - pivot)/atoms, Σ(E - pivot)²/atoms²."""
        for composition, (count, pivot, s1, s2) in self.compositions.items():
            atoms = sum(c for _, c in composition)
            offset = (pivot - sum(e0s[z] * c for z, c in composition)) / atoms
            yield count, offset, s1 / atoms, s2 / atoms**2

    def energy_shift(self, e0s: dict[int, float]) -> float:
        """Mean per-atom energy left after subtracting the E0s, eV/atom."""
        total, count = 0.0, 0
        for n, offset, s1, _ in self._residuals(e0s):
            total += n * offset + s1
            count += n
        return total / count if count else 0.0

    def per_atom_energy_std(self, e0s: dict[int, float]) -> float:
        """Standard deviation (N - 1) of the per-atom energy after E0s, eV/atom."""
        count = sum(entry[0] for entry in self.compositions.values())
        if count < 2:
            return 1.0
        mean = self.energy_shift(e0s)
        squares = 0.0
        for n, offset, s1, s2 in self._residuals(e0s):
            a = offset - mean  # residual = a + (E - pivot)/atoms
            squares += s2 + 2 * a * s1 + n * a * a
        return math.sqrt(max(squares, 0.0) / (count - 1))

    def force_rms(self) -> float:
        """Root mean square of the force components, eV/Å (1.0 if there are no forces)."""
        if self.force_components and self.force_squares > 0:
            return math.sqrt(self.force_squares / self.force_components)
        return 1.0

    def mean_num_neighbors(self) -> float:
        """Average number of neighbours per atom within the dataset's cutoff."""
        return self.num_edges / max(self.num_atoms, 1)


def _batches(dataset: Iterable[Graph], size: int) -> Iterator[Graph]:
    """The structures of ``dataset`` as collated graph dicts of up to ``size`` structures."""
    iter_batches = getattr(dataset, "iter_batches", None)
    if iter_batches is not None:  # a packed dataset reads contiguous ranges
        yield from iter_batches(size)
        return
    pending: list[Graph] = []
    for graph in dataset:
        pending.append(graph)
        if len(pending) == size:
            yield collate(pending)
            pending = []
    if pending:
        yield collate(pending)


def summarize(dataset: Iterable[Graph] | DataSummary, batch_size: int = 512) -> DataSummary:
    """One streaming pass over ``dataset`` (any iterable of graph dicts)."""
    if isinstance(dataset, DataSummary):
        return dataset
    summary = DataSummary()
    for batch in _batches(dataset, batch_size):
        summary.update(batch)
    return summary


def e0s_least_squares(
    dataset: Iterable[Graph] | DataSummary, species: Sequence[int]
) -> dict[int, float]:
    """Per-element reference energies (eV); see :meth:`DataSummary.e0s_least_squares`."""
    return summarize(dataset).e0s_least_squares(species)


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


# eV/Å: the RMS force of real structures, even hot or strained ones, is 0.1-10 eV/Å;
# forces in meV/Å or kcal/mol/Å are 1000 or 23 times larger
FORCE_RMS_LIMIT = 50.0


def check_units(dataset: Iterable[Graph] | DataSummary, origin: str) -> None:
    """Warn (:class:`~mlff.errors.DataWarning`) when the forces of ``dataset`` are too large
    to be in eV/Å; the data is still used.

    Args:
        dataset: the data, or its :class:`DataSummary`.
        origin: the data's name (a file), for the message.
    """
    summary = summarize(dataset)
    if summary.has_forces and summary.force_rms() > FORCE_RMS_LIMIT:
        warnings.warn(
            f"{origin}: the forces have an RMS of {summary.force_rms():.4g} eV/Å, far above "
            f"that of real structures (0.1-10 eV/Å). Are they in meV/Å or kcal/mol/Å? mlff "
            "reads eV/Å (and eV, Å); convert them or set the right data.keys.",
            DataWarning, stacklevel=2,
        )


def check_e0s(e0s: dict[int, float], species: Sequence[int], origin: str) -> None:
    """Raise if an element of the training set has no E0."""
    missing = [chemical_symbols[z] for z in species if z not in e0s]
    if missing:
        raise DataError(
            f"{origin}: no isolated-atom energy for {', '.join(missing)}. Add it, or use "
            "e0s: least_squares."
        )


def energy_shift(dataset: Iterable[Graph] | DataSummary, e0s: dict[int, float]) -> float:
    """Mean per-atom energy left after subtracting the E0s, eV/atom."""
    return summarize(dataset).energy_shift(e0s)


def force_rms(dataset: Iterable[Graph] | DataSummary) -> float:
    """Root mean square of the force components, eV/Å (1.0 if there are no forces)."""
    return summarize(dataset).force_rms()


def mean_num_neighbors(dataset: Iterable[Graph] | DataSummary) -> float:
    """Average number of neighbours per atom within the dataset's cutoff."""
    return summarize(dataset).mean_num_neighbors()


def per_atom_energy_std(dataset: Iterable[Graph] | DataSummary, e0s: dict[int, float]) -> float:
    """Standard deviation of the per-atom energy after E0s, eV/atom (1.0 below 2 energies)."""
    return summarize(dataset).per_atom_energy_std(e0s)


def resolve_e0s(spec: str | dict[str, float], train: Any, species: Sequence[int],
                keys: LabelKeys) -> dict[int, float]:
    """The E0s (eV, by atomic number) of ``species`` that a ``data.e0s`` setting gives:
    ``"least_squares"`` (fitted to the energies of ``train``), a mapping of element
    symbols to eV, or the path of an isolated-atoms file read with ``keys``.

    Raises:
        ConfigError: a mapping key that is not an element symbol.
        DataError: an element of ``species`` without an E0.
    """
    if spec == "least_squares":
        return e0s_least_squares(train, species)
    if isinstance(spec, dict):
        e0s = {}
        for symbol, value in spec.items():
            if symbol not in atomic_numbers:
                raise ConfigError(f"data.e0s: {symbol!r} is not an element symbol.")
            e0s[atomic_numbers[symbol]] = float(value)
        check_e0s(e0s, species, "data.e0s")
        return e0s
    path = Path(spec)
    e0s = e0s_from_file(path, keys)
    check_e0s(e0s, species, str(path))
    return {z: e0s[z] for z in species}
