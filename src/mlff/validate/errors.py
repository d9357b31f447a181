"""Test-set errors: batched predictions of a Potential and their errors against the labels.

Units: energies eV, forces eV/Å, stress eV/Å³ (ASE sign) in :class:`Predictions` and
:class:`References`; the metrics are reported in meV, meV/atom, meV/Å and meV/Å³.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlff.data import keys as K
from mlff.data.dataset import BatchLoader, GraphDataset
from mlff.data.dispersion import dispersion_settings
from mlff.data.dispersion_labels import dispersion_labels
from mlff.data.graph import to_device
from mlff.data.readers import Structure
from mlff.errors import ConfigError
from mlff.models.potential import Potential

Metrics = dict[str, float | int]
OVERALL = "overall"
CONFIG_TYPES = "config_types"


@dataclass
class Predictions:
    """A potential's predictions for each structure of a dataset, in dataset order.

    Attributes:
        energy: (B,) total energies, eV.
        forces: B arrays of shape (N_i, 3), eV/Å.
        stress: B arrays of shape (3, 3), eV/Å³ (ASE sign), or ``None`` for structures
            that are not periodic in all three directions.
    """

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: list[np.ndarray | None]

    def __len__(self) -> int:
        return len(self.energy)


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


def as_dataset(data: GraphDataset | Sequence[Structure], cutoff: float) -> GraphDataset:
    """Return ``data`` if a dataset, else build one with neighbours within ``cutoff`` (Å)."""
    if isinstance(data, GraphDataset):
        return data
    return GraphDataset.from_structures(list(data), cutoff)


def predict(
    potential: Potential,
    data: GraphDataset | Sequence[Structure],
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> Predictions:
    """Energies, forces and (for 3D-periodic structures) stress of every structure.

    Args:
        potential: the model; moved to ``device`` when one is given, evaluated in its
            own dtype.
        data: a dataset built with a cutoff >= the model's, or structures (their
            neighbour lists are then built with the model's cutoff).
        batch_size: structures per forward pass.
        device: where to run; default the potential's device.

    Returns:
        The predictions, in the order of ``data``.

    Raises:
        UnknownElementError: a structure holds an element unknown to the model; the
            message names its source ("file:frame").
        ConfigError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size = {batch_size}; it must be >= 1.")
    dataset = as_dataset(data, potential.cutoff)
    potential.check_structures(dataset.graphs, dataset.sources)
    if device is not None:
        potential = potential.to(device)
    was_training = potential.training
    potential.eval()
    energies: list[np.ndarray] = []
    forces: list[np.ndarray] = []
    stresses: list[np.ndarray | None] = []
    try:
        for batch in BatchLoader(dataset, batch_size, shuffle=False):
            energy, batch_forces, batch_stress = _predict_batch(potential, batch)
            energies.append(energy)
            forces.extend(batch_forces)
            stresses.extend(batch_stress)
    finally:
        potential.train(was_training)
    energy = np.concatenate(energies) if energies else np.zeros(0)
    settings = dispersion_settings(getattr(potential, "metadata", None))
    if settings is not None:  # trained on labels minus D3: predict with D3 added back
        d3 = dispersion_labels(dataset, settings)
        energy = energy + d3["energy"].numpy()
        d3_forces = torch.split(d3["forces"], [len(f) for f in forces])
        forces = [f + extra.numpy() for f, extra in zip(forces, d3_forces)]
        stresses = [None if s is None else s + d3["stress"][i].numpy()
                    for i, s in enumerate(stresses)]
    return Predictions(energy=energy, forces=forces, stress=stresses)


def _predict_batch(
    potential: Potential, batch: dict[str, torch.Tensor]
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray | None]]:
    """Run one collated batch; returns energies (B,), forces per structure, stress or None."""
    graph = to_device(batch, potential.device, potential.dtype)
    periodic = graph[K.PBC].all(dim=-1).cpu().numpy()
    out = potential(graph, compute_forces=True, compute_stress=bool(periodic.any()))
    energy = out[K.ENERGY].detach().cpu().double().numpy()
    sizes = graph[K.NUM_ATOMS].cpu().tolist()
    forces = [f.numpy() for f in torch.split(out[K.FORCES].detach().cpu().double(), sizes)]
    stress: list[np.ndarray | None] = [None] * len(sizes)
    if K.STRESS in out:
        values = out[K.STRESS].detach().cpu().double().numpy()
        stress = [values[i] if periodic[i] else None for i in range(len(sizes))]
    return energy, forces, stress


def error_metrics(predictions: Predictions, dataset: GraphDataset) -> dict[str, Any]:
    """Errors of ``predictions`` against the labels of ``dataset``, overall and per config_type.

    Args:
        predictions: from :func:`predict` on ``dataset``.
        dataset: the labelled structures, in the same order.

    Returns:
        ``{"overall": metrics, "config_types": {name: metrics}}``; the metric names and
        units are listed in the module docstring.
    """
    if len(predictions) != len(dataset):
        raise ValueError(f"{len(predictions)=} != {len(dataset)=}")
    refs = References.from_dataset(dataset)
    result: dict[str, Any] = {OVERALL: group_metrics(predictions, refs, np.arange(len(dataset)))}
    result[CONFIG_TYPES] = {
        dataset.config_types[tag]: group_metrics(
            predictions, refs, np.flatnonzero(refs.config_type == tag)
        )
        for tag in sorted(set(refs.config_type.tolist()))
    }
    return result


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
