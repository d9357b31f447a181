"""Per-structure descriptors from a model's own invariant features (for diverse selection).

The descriptor of an atom is the rotation-invariant feature vector the architecture feeds
to its energy readout (:meth:`mlff.models.contract.Architecture.invariant_features`: the
last layer's scalars for message-passing models, radial histograms per neighbour species
for the strictly local ones); a structure's descriptor is the mean over its atoms, per
species block-concatenated, so that structures of different composition stay apart.
"""

from __future__ import annotations

import torch

from mlff.data import keys as K
from mlff.models.predict import EnergyModel
from mlff.nn import scatter_sum


@torch.no_grad()
def structure_descriptors(model: EnergyModel, graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """Descriptors (B, S·F) of each structure of a graph dict, in the model's dtype.

    Args:
        model: the model (a Potential or a committee) whose features are used.
        graph: a (batched) graph dict on the model's device and dtype.
    """
    atom_features = atom_descriptors(model, graph)
    numbers = graph[K.ATOMIC_NUMBERS]
    known = torch.as_tensor(model.species, device=numbers.device)
    species = (numbers.unsqueeze(-1) == known).to(torch.int64).argmax(dim=-1)
    num_species = len(model.species)
    num_structures = graph[K.CELL].shape[0]
    batch = graph[K.BATCH]
    blocks = []
    for s in range(num_species):
        mask = (species == s).to(atom_features.dtype).unsqueeze(-1)
        total = scatter_sum(atom_features * mask, batch, num_structures)
        count = scatter_sum(mask, batch, num_structures).clamp(min=1.0)
        blocks.append(total / count)
    return torch.cat(blocks, dim=-1)


def atom_descriptors(model: EnergyModel, graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """Invariant per-atom features (N, F) of ``model`` for ``graph`` (see module doc)."""
    return model.invariant_features(graph)
