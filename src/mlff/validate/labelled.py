"""Labelled test sets and a calculator's results on them, structure by structure.

Any ASE calculator can be evaluated (an :class:`~mlff.calculators.MLFFCalculator`, a
committee's, or a reference code); its results are turned into the
:class:`~mlff.validate.errors.Predictions` / :class:`~mlff.validate.errors.References`
pair that :func:`mlff.validate.errors.group_metrics` measures. A committee's calculator
also reports ``forces_std`` ((N,) eV/Å, per-atom norm of the members' spread) and
``energy_std_per_atom`` (eV/atom); they are kept when present.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, PropertyNotImplementedError
from ase.stress import voigt_6_to_full_3x3_stress

from mlff.data.readers import LabelKeys, Structure, read_structures
from mlff.errors import DataError
from mlff.validate.errors import Predictions, References

FORCES_STD = "forces_std"  # (N,) eV/Å, committee calculators only
ENERGY_STD_PER_ATOM = "energy_std_per_atom"  # eV/atom, committee calculators only


@dataclass
class LabelledSet:
    """A named list of labelled structures (a test set).

    Attributes:
        name: shown in tables and figure legends, e.g. the file's stem.
        structures: the structures with their labels (eV, eV/Å, eV/Å³).
        path: the file they were read from, if any.
    """

    name: str
    structures: list[Structure]
    path: Path | None = None

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None,
                  keys: LabelKeys = LabelKeys()) -> LabelledSet:
        """Read every frame of ``path`` (any file ASE reads).

        Raises:
            DataError: the file is missing or unreadable, or no frame has an energy,
                forces or stress label (the message names the file and the keys).
        """
        path = Path(path)
        structures = read_structures(path, keys)
        if not any(s.energy is not None or s.forces is not None or s.stress is not None
                   for s in structures):
            raise DataError(
                f"{path}: no frame has an energy ('{keys.energy}'), forces ('{keys.forces}') "
                f"or stress ('{keys.stress}') label to compare with. Give the keys the file "
                "uses (--energy-key/--forces-key/--stress-key)."
            )
        return cls(name or path.stem, structures, path)

    def __len__(self) -> int:
        return len(self.structures)


@dataclass
class SetEvaluation:
    """A calculator's results on a :class:`LabelledSet`, with the labels beside them.

    Attributes:
        name: the set's name.
        predictions: energy (B,) eV, forces (N_i, 3) eV/Å, stress (3, 3) eV/Å³ or None.
        references: the labels, with flags for the missing ones.
        config_types: name of each integer tag of ``references.config_type``.
        numbers: (N_i,) atomic numbers of each structure.
        forces_std: (N_i,) eV/Å per structure, or None when the calculator gives none.
        energy_std_per_atom: (B,) eV/atom, or None when the calculator gives none.
        seconds: wall-clock time of the evaluation, s.
    """

    name: str
    predictions: Predictions
    references: References
    config_types: list[str]
    numbers: list[np.ndarray]
    forces_std: list[np.ndarray] | None
    energy_std_per_atom: np.ndarray | None
    seconds: float

    @property
    def has_uncertainty(self) -> bool:
        """Whether the calculator reported a committee's force spread."""
        return self.forces_std is not None

    def __len__(self) -> int:
        return len(self.predictions)


def evaluate_set(calculator: BaseCalculator, labelled: LabelledSet) -> SetEvaluation:
    """Run ``calculator`` on every structure of ``labelled`` (one call each).

    Args:
        calculator: any ASE calculator giving energy and forces; stress is asked for
            3D-periodic structures and left out when the calculator does not implement it.
        labelled: the structures.

    Returns:
        The predictions beside the labels, with committee spreads when reported.
    """
    energies, forces, stresses, spreads, energy_spreads = [], [], [], [], []
    start = time.perf_counter()
    for structure in labelled.structures:
        atoms = structure.atoms.copy()
        atoms.calc = calculator
        energies.append(float(atoms.get_potential_energy()))
        forces.append(np.asarray(atoms.get_forces(), dtype=np.float64))
        stresses.append(_stress(atoms))
        results = getattr(calculator, "results", {})
        spreads.append(np.asarray(results[FORCES_STD], dtype=np.float64)
                       if FORCES_STD in results else None)
        energy_spreads.append(float(results[ENERGY_STD_PER_ATOM])
                              if ENERGY_STD_PER_ATOM in results else np.nan)
    seconds = time.perf_counter() - start
    references, config_types = references_of(labelled.structures)
    has_spread = bool(spreads) and all(s is not None for s in spreads)
    return SetEvaluation(
        name=labelled.name,
        predictions=Predictions(np.asarray(energies), forces, stresses),
        references=references,
        config_types=config_types,
        numbers=[np.asarray(s.atoms.numbers) for s in labelled.structures],
        forces_std=spreads if has_spread else None,
        energy_std_per_atom=np.asarray(energy_spreads) if has_spread else None,
        seconds=seconds,
    )


def _stress(atoms: Atoms) -> np.ndarray | None:
    """The 3x3 stress (eV/Å³) of a 3D-periodic structure, or None."""
    if not atoms.pbc.all():
        return None
    try:
        return voigt_6_to_full_3x3_stress(np.asarray(atoms.get_stress(), dtype=np.float64))
    except PropertyNotImplementedError:
        return None


def references_of(structures: Sequence[Structure]) -> tuple[References, list[str]]:
    """The labels of ``structures`` as :class:`References`, and the config_type names."""
    names: list[str] = []
    for s in structures:
        if s.config_type not in names:
            names.append(s.config_type)
    zeros3 = np.zeros((3, 3))
    refs = References(
        energy=np.array([s.energy if s.energy is not None else 0.0 for s in structures],
                        dtype=np.float64),
        forces=[np.asarray(s.forces, dtype=np.float64) if s.forces is not None
                else np.zeros((len(s), 3)) for s in structures],
        stress=np.array([s.stress if s.stress is not None else zeros3 for s in structures],
                        dtype=np.float64).reshape(-1, 3, 3),
        has_energy=np.array([s.energy is not None for s in structures], dtype=bool),
        has_forces=np.array([s.forces is not None for s in structures], dtype=bool),
        has_stress=np.array([s.stress is not None for s in structures], dtype=bool),
        num_atoms=np.array([len(s) for s in structures], dtype=np.int64),
        config_type=np.array([names.index(s.config_type) for s in structures], dtype=np.int64),
    )
    return refs, names


class EvaluationCache:
    """Evaluates sets with one calculator, each set once (checks share the results).

    Args:
        calculator: the calculator every set is evaluated with.
    """

    def __init__(self, calculator: BaseCalculator) -> None:
        self.calculator = calculator
        self._done: dict[int, tuple[LabelledSet, SetEvaluation]] = {}

    def __call__(self, labelled: LabelledSet) -> SetEvaluation:
        """The evaluation of ``labelled`` (computed on the first request)."""
        key = id(labelled)
        if key not in self._done:  # the set is kept, so its id is not reused
            self._done[key] = (labelled, evaluate_set(self.calculator, labelled))
        return self._done[key][1]


def concatenate(name: str, sets: Sequence[LabelledSet]) -> LabelledSet:
    """One set holding the structures of ``sets``, in order."""
    return LabelledSet(name, [s for labelled in sets for s in labelled.structures])
