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
from mlff.models.potential import Potential
from mlff.nn import scatter_sum


@torch.no_grad()
def structure_descriptors(potential: Potential, graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """Descriptors (B, S·F) of each structure of a graph dict, in the model's dtype.

    Args:
        potential: the model whose features are used.
        graph: a (batched) graph dict on the model's device and dtype.
    """
    atom_features = atom_descriptors(potential, graph)
    species = potential.species_table[graph[K.ATOMIC_NUMBERS]]
    num_species = len(potential.species)
    num_structures = graph[K.CELL].shape[0]
    batch = graph[K.BATCH]
    blocks = []
    for s in range(num_species):
        mask = (species == s).to(atom_features.dtype).unsqueeze(-1)
        total = scatter_sum(atom_features * mask, batch, num_structures)
        count = scatter_sum(mask, batch, num_structures).clamp(min=1.0)
        blocks.append(total / count)
    return torch.cat(blocks, dim=-1)


def atom_descriptors(potential: Potential, graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """Invariant per-atom features (N, F) of ``potential`` for ``graph`` (see module doc)."""
    with torch.enable_grad():  # a model may differentiate inside; we only need its forward
        return potential.model.invariant_features(potential.inputs(graph)).detach()
