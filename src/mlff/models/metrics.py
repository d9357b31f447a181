"""Error metrics of a model's predictions against labels: the one definition of their names.

Two ways to the same numbers: :func:`group_metrics` over the per-structure
:class:`~mlff.models.predict.Predictions` of a dataset (``mlff evaluate``, ``mlff
validate``), and :class:`ErrorAccumulator`, summed batch by batch (the training log, the
model file's test metrics). Units: energies eV, forces eV/Å, stress eV/Å³ (ASE sign) in;
meV, meV/atom, meV/Å and meV/Å³ out.

Metric names (a name is present only when at least one structure has that label):

========================================  ==============================================
``num_structures``, ``num_atoms``          structures and atoms in the group
``num_energy``                             structures with an energy label
``energy_mae_meV``, ``energy_rmse_meV``    total energy per structure, meV
``energy_mae_meV_per_atom``, ``..rmse..``  energy per atom, |ΔE|/N per structure, meV/atom
``num_forces``, ``num_force_components``   structures with forces; their 3N components
``forces_mae_meV_per_A``, ``..._rmse_..``  over all force components, meV/Å
``num_stress``                             periodic structures with a stress label
``stress_mae_meV_per_A3``, ``..._rmse..``  over the 9 components of each stress, meV/Å³
========================================  ==============================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.models.predict import Predictions

Metrics = dict[str, float | int]


@dataclass
class References:
    """The labels of each structure of a dataset, with flags for the missing ones.

    Attributes:
        energy: (B,) total energies, eV (0 where missing).
        forces: B arrays (N_i, 3), eV/Å (zeros where missing).
        stress: (B, 3, 3) stress, eV/Å³ (zeros where missing).
        has_energy, has_forces, has_stress: (B,) bool, whether each label is present.
        num_atoms: (B,) atoms per structure.
        config_type: (B,) integer tag; names in ``GraphDataset.config_types``.
    """

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray
    has_energy: np.ndarray
    has_forces: np.ndarray
    has_stress: np.ndarray
    num_atoms: np.ndarray
    config_type: np.ndarray

    @classmethod
    def from_dataset(cls, dataset: GraphDataset) -> References:
        """Collect the labels of every structure of ``dataset``."""
        def stack(key: str) -> np.ndarray:
            return np.concatenate([g[key].detach().cpu().numpy() for g in dataset.graphs])

        return cls(
            energy=stack(K.ENERGY).astype(np.float64),
            forces=[g[K.FORCES].detach().cpu().double().numpy() for g in dataset.graphs],
            stress=stack(K.STRESS).astype(np.float64).reshape(-1, 3, 3),
            has_energy=stack(K.HAS_ENERGY).astype(bool),
            has_forces=stack(K.HAS_FORCES).astype(bool),
            has_stress=stack(K.HAS_STRESS).astype(bool),
            num_atoms=stack(K.NUM_ATOMS).astype(np.int64),
            config_type=stack(K.CONFIG_TYPE).astype(np.int64),
        )


def group_metrics(predictions: Predictions, refs: References, indices: np.ndarray) -> Metrics:
    """Compute the metrics of the structures at ``indices`` (names and units: module docstring)."""
    metrics: Metrics = {
        "num_structures": int(len(indices)),
        "num_atoms": int(refs.num_atoms[indices].sum()),
    }
    metrics.update(energy_metrics(predictions, refs, indices))
    metrics.update(force_metrics(predictions, refs, indices))
    metrics.update(stress_metrics(predictions, refs, indices))
    return metrics


def energy_metrics(predictions: Predictions, refs: References, indices: np.ndarray) -> Metrics:
    """Energy MAE/RMSE per structure (meV) and per atom (meV/atom) over labelled structures."""
    labelled = indices[refs.has_energy[indices]]
    metrics: Metrics = {"num_energy": int(len(labelled))}
    if len(labelled) == 0:
        return metrics
    error = predictions.energy[labelled] - refs.energy[labelled]
    per_atom = error / refs.num_atoms[labelled]
    metrics.update(_mae_rmse(error * 1000.0, "energy", "meV"))
    metrics.update(_mae_rmse(per_atom * 1000.0, "energy", "meV_per_atom"))
    return metrics


def force_metrics(predictions: Predictions, refs: References, indices: np.ndarray) -> Metrics:
    """Force MAE/RMSE (meV/Å) over every component of the structures with force labels."""
    labelled = indices[refs.has_forces[indices]]
    metrics: Metrics = {"num_forces": int(len(labelled))}
    if len(labelled) == 0:
        return metrics
    error = np.concatenate([(predictions.forces[i] - refs.forces[i]).ravel() for i in labelled])
    metrics["num_force_components"] = int(error.size)
    metrics.update(_mae_rmse(error * 1000.0, "forces", "meV_per_A"))
    return metrics


def stress_metrics(predictions: Predictions, refs: References, indices: np.ndarray) -> Metrics:
    """Stress MAE/RMSE (meV/Å³) over the 9 components of 3D-periodic structures with a label."""
    labelled = [int(i) for i in indices if refs.has_stress[i] and predictions.stress[i] is not None]
    metrics: Metrics = {"num_stress": len(labelled)}
    if not labelled:
        return metrics
    error = np.stack([predictions.stress[i] - refs.stress[i] for i in labelled]).ravel()
    metrics.update(_mae_rmse(error * 1000.0, "stress", "meV_per_A3"))
    return metrics


def _mae_rmse(error: np.ndarray, name: str, unit: str) -> Metrics:
    """``{name}_mae_{unit}`` and ``{name}_rmse_{unit}`` of an error array."""
    return {
        f"{name}_mae_{unit}": float(np.mean(np.abs(error))),
        f"{name}_rmse_{unit}": float(np.sqrt(np.mean(error**2))),
    }


class ErrorAccumulator:
    """Sum absolute and squared errors over batches, then report MAE/RMSE."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def _add(self, name: str, errors: torch.Tensor) -> None:
        errors = errors.detach().double()
        if errors.numel() == 0:
            return
        entry = self.sums.setdefault(name, [0.0, 0.0, 0])
        entry[0] += float(errors.abs().sum())
        entry[1] += float((errors**2).sum())
        entry[2] += errors.numel()

    def update(self, pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        """Add the errors of one batch (only labels that are present count)."""
        has_energy = batch[K.HAS_ENERGY]
        if K.ENERGY in pred and bool(has_energy.any()):
            diff = (pred[K.ENERGY] - batch[K.ENERGY])[has_energy]
            self._add("energy", diff)
            self._add("energy_per_atom", diff / batch[K.NUM_ATOMS][has_energy])
        has_forces = batch[K.HAS_FORCES][batch[K.BATCH]]
        if K.FORCES in pred and bool(has_forces.any()):
            self._add("forces", (pred[K.FORCES] - batch[K.FORCES])[has_forces])
        has_stress = batch[K.HAS_STRESS]
        if K.STRESS in pred and bool(has_stress.any()):
            self._add("stress", (pred[K.STRESS] - batch[K.STRESS])[has_stress])

    def reduce(self, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the accumulated errors over all processes of a distributed run;
        ``all_reduce_sum`` sums a float64 tensor over the processes."""
        flat = torch.tensor([v for name in _NAMES for v in self.sums.get(name, [0.0, 0.0, 0])],
                            dtype=torch.float64)
        flat = all_reduce_sum(flat).view(len(_NAMES), 3).tolist()
        self.sums = {name: [a, b, int(c)] for name, (a, b, c) in zip(_NAMES, flat) if c > 0}

    def compute(self) -> dict[str, float]:
        """MAE and RMSE in meV units, and the counts (see the module docstring)."""
        out: dict[str, float] = {}
        for name, (abs_sum, sq_sum, count) in self.sums.items():
            quantity, unit, count_name, values_per_item = _NAMES[name]
            out[f"{quantity}_mae_{unit}"] = 1e3 * abs_sum / count
            out[f"{quantity}_rmse_{unit}"] = 1e3 * math.sqrt(sq_sum / count)
            if count_name:
                out[count_name] = count // values_per_item
        return out


# accumulator name -> (quantity, unit suffix, count name, values per counted item)
_NAMES = {
    "energy": ("energy", "meV", "num_energy", 1),
    "energy_per_atom": ("energy", "meV_per_atom", None, 1),
    "forces": ("forces", "meV_per_A", "num_force_components", 1),
    "stress": ("stress", "meV_per_A3", "num_stress", 9),  # 9 components per structure
}
