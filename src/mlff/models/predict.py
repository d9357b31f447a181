"""The evaluation kernel: a model's outputs on a dataset, batch by batch, and its predictions.

Every loop that evaluates a model on data (training validation, the energy offset and
E0 fits, committee errors, ``mlff evaluate`` and ``mlff validate``) goes through
:func:`batched_outputs`; :func:`predict` gathers its outputs per structure. Both take any
:class:`EnergyModel`: a :class:`~mlff.models.Potential` or a committee.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np
import torch

from mlff.data import keys as K
from mlff.data.dataset import BatchLoader, GraphDataset
from mlff.data.graph import to_device
from mlff.data.readers import Structure
from mlff.errors import ConfigError


@runtime_checkable
class EnergyModel(Protocol):
    """What calculators, MD, selection and evaluation use of a model: a
    :class:`~mlff.models.Potential` and a :class:`~mlff.uq.Committee` both are one."""

    species: list[int]
    cutoff: float
    hyperparameters: dict[str, Any]
    metadata: dict[str, Any]
    training: bool

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters."""
        ...

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        ...

    def receptive_hops(self) -> int:
        """How many edges away an atom's energy can feel another atom."""
        ...

    def check_species(self, atomic_numbers: torch.Tensor, where: str = "structure") -> None:
        """Raise ``UnknownElementError`` for an element the model does not know."""
        ...

    def check_structures(self, graphs: Iterable[dict[str, torch.Tensor]],
                         sources: Sequence[str]) -> None:
        """:meth:`check_species` for every graph dict, naming its source."""
        ...

    def invariant_features(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rotation-invariant per-atom features (N, F) for selection."""
        ...

    def __call__(self, graph: dict[str, torch.Tensor], compute_forces: bool = True,
                 compute_stress: bool = False, create_graph: bool = False,
                 energy_mask: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Energies (B,) and node energies (N,), eV; forces (N, 3) and stress (B, 3, 3)
        on request."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Switch training mode (``torch.nn.Module.train``)."""
        ...


def batched_outputs(
    model: EnergyModel,
    dataset: GraphDataset,
    batch_size: int,
    compute_forces: bool = True,
    compute_stress: bool | None = False,
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """``(batch, outputs)`` of every batch of ``dataset`` in order, outputs detached.

    Args:
        model: evaluated as it is (its training mode is left alone).
        dataset: the structures; each batch is moved to the model's device and dtype.
        batch_size: structures per forward pass.
        compute_forces: also forces (else no autograd graph is built at all).
        compute_stress: also stress; ``None``: when a structure of the batch is periodic
            in three dimensions.
    """
    for batch in BatchLoader(dataset, batch_size, shuffle=False).batches():
        batch = to_device(batch, model.device, model.dtype)
        stress = bool(batch[K.PBC].all(dim=-1).any()) if compute_stress is None \
            else compute_stress
        with torch.set_grad_enabled(compute_forces or stress or torch.is_grad_enabled()):
            out = model(batch, compute_forces=compute_forces, compute_stress=stress)
        yield batch, {key: value.detach() for key, value in out.items()}


@dataclass
class Predictions:
    """A model's predictions for each structure of a dataset, in dataset order.

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


def as_dataset(data: GraphDataset | Sequence[Structure], cutoff: float) -> GraphDataset:
    """Return ``data`` if a dataset, else build one with neighbours within ``cutoff`` (Å)."""
    if isinstance(data, GraphDataset):
        return data
    return GraphDataset.from_structures(list(data), cutoff)


def predict(
    model: EnergyModel,
    data: GraphDataset | Sequence[Structure],
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> Predictions:
    """Energies, forces and (for 3D-periodic structures) stress of every structure.

    Args:
        model: the model; moved to ``device`` when one is given, evaluated in its own
            dtype and in eval mode.
        data: a dataset built with a cutoff >= the model's, or structures (their
            neighbour lists are then built with the model's cutoff).
        batch_size: structures per forward pass.
        device: where to run; default the model's device.

    Returns:
        The predictions, in the order of ``data``.

    Raises:
        UnknownElementError: a structure holds an element unknown to the model; the
            message names its source ("file:frame").
        ConfigError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size = {batch_size}; it must be >= 1.")
    dataset = as_dataset(data, model.cutoff)
    model.check_structures(dataset.graphs, dataset.sources)
    if device is not None:
        model = model.to(device)
    was_training = model.training
    model.train(False)
    energies: list[np.ndarray] = []
    forces: list[np.ndarray] = []
    stresses: list[np.ndarray | None] = []
    try:
        for graph, out in batched_outputs(model, dataset, batch_size, compute_stress=None):
            periodic = graph[K.PBC].all(dim=-1).cpu().numpy()
            energies.append(out[K.ENERGY].cpu().double().numpy())
            sizes = graph[K.NUM_ATOMS].cpu().tolist()
            forces += [f.numpy() for f in torch.split(out[K.FORCES].cpu().double(), sizes)]
            if K.STRESS in out:
                values = out[K.STRESS].cpu().double().numpy()
                stresses += [values[i] if periodic[i] else None for i in range(len(sizes))]
            else:
                stresses += [None] * len(sizes)
    finally:
        model.train(was_training)
    energy = np.concatenate(energies) if energies else np.zeros(0)
    return Predictions(energy=energy, forces=forces, stress=stresses)
