"""Committee predictions on a labelled data set: disagreement beside the true errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.models.predict import batched_outputs
from mlff.uq.committee import ENERGY_STD, FORCES_STD, Committee


@dataclass
class CommitteeErrors:
    """Per-structure disagreement and errors of a committee on a data set (structures
    without force labels are left out).

    Attributes:
        forces_std: S arrays (N_s,), per-atom force disagreement σ_i, eV/Å.
        force_errors: S arrays (N_s, 3), mean prediction minus reference forces, eV/Å.
        energy_std_per_atom: (S,) member spread of the energy divided by N_s, eV/atom.
        energy_errors_per_atom: (S,) (E − E_ref)/N_s, eV/atom (NaN without an energy label).
        indices: (S,) positions of these structures in the data set.
    """

    forces_std: list[np.ndarray]
    force_errors: list[np.ndarray]
    energy_std_per_atom: np.ndarray
    energy_errors_per_atom: np.ndarray
    indices: np.ndarray


def committee_errors(committee: Committee, dataset: GraphDataset, batch_size: int = 16) -> CommitteeErrors:
    """Evaluate ``committee`` on every structure of ``dataset`` that has force labels."""
    forces_std, force_errors, e_std, e_err, indices = [], [], [], [], []
    position = 0
    was_training = committee.training
    committee.eval()
    try:
        for graph, out in batched_outputs(committee, dataset, batch_size):
            sizes = graph[K.NUM_ATOMS].tolist()
            std = torch.split(out[FORCES_STD].detach().double().cpu(), sizes)
            delta = torch.split((out[K.FORCES] - graph[K.FORCES]).detach().double().cpu(), sizes)
            natoms = graph[K.NUM_ATOMS].double().cpu()
            spread = (out[ENERGY_STD].detach().cpu() / natoms).numpy()
            energy_error = ((out[K.ENERGY] - graph[K.ENERGY]).detach().cpu() / natoms).numpy()
            has_energy = graph[K.HAS_ENERGY].cpu().numpy()
            has_forces = graph[K.HAS_FORCES].cpu().numpy()
            for s in range(len(sizes)):
                if has_forces[s]:
                    forces_std.append(std[s].numpy())
                    force_errors.append(delta[s].numpy())
                    e_std.append(spread[s])
                    e_err.append(energy_error[s] if has_energy[s] else np.nan)
                    indices.append(position + s)
            position += len(sizes)
    finally:
        committee.train(was_training)
    return CommitteeErrors(forces_std, force_errors, np.array(e_std), np.array(e_err),
                           np.array(indices, dtype=np.int64))
