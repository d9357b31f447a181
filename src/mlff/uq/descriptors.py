"""Per-structure descriptors from a model's own invariant features (for diverse selection).

The descriptor of an atom is the rotation-invariant feature vector the architecture feeds
to its energy readout; a structure's descriptor is the mean over its atoms, per species
block-concatenated, so that structures of different composition stay apart. The
architectures differ in where those features live:

=============  ==========================================================
``schnet``     input of ``readout`` (the last interaction's features)
``painn``      input of ``readout`` (scalar channel of the last layer)
``nequip``,    output of ``readout_hidden`` (scalars of the last layer)
``sevennet``
``mace``       input of ``readouts.0``, its scalar (0e) channels
``deeppot``,   a smooth radial histogram per neighbour species (no single
``allegro``    per-atom feature vector exists before their readouts)
=============  ==========================================================
"""

from __future__ import annotations

import torch
from torch import nn

from mlff.data import keys as K
from mlff.models.potential import Potential
from mlff.nn import scatter_sum

# architecture -> (module path inside Potential.model, take the input (True) or the output)
_FEATURE_MODULES: dict[str, tuple[str, bool]] = {
    "schnet": ("readout", True),
    "painn": ("readout", True),
    "nequip": ("readout_hidden", False),
    "sevennet": ("readout_hidden", False),
    "mace": ("readouts.0", True),
}
_HISTOGRAM_BINS = 12


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
    architecture = potential.hyperparameters["architecture"]
    if architecture not in _FEATURE_MODULES:
        return _radial_histogram(potential, graph)
    path, use_input = _FEATURE_MODULES[architecture]
    module: nn.Module = potential.model.get_submodule(path)
    captured: list[torch.Tensor] = []

    def hook(_module, inputs, output):
        captured.append((inputs[0] if use_input else output).detach())

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():  # the Potential may differentiate; we only need its forward
            potential(graph, compute_forces=False)
    finally:
        handle.remove()
    features = captured[0]
    if architecture == "mace":
        features = features[:, : int(potential.hyperparameters["num_channels"])]
    return features


def _radial_histogram(potential: Potential, graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per atom, per neighbour species: Gaussian-smeared counts of neighbour distances."""
    sender, receiver = graph[K.EDGE_INDEX]
    cell = graph[K.CELL]
    batch = graph[K.BATCH]
    positions = graph[K.POSITIONS]
    vectors = (positions[receiver] - positions[sender]
               + torch.einsum("ei,eij->ej", graph[K.EDGE_SHIFT], cell[batch[sender]]))
    lengths = torch.linalg.norm(vectors, dim=-1)
    centers = torch.linspace(0.5, potential.cutoff, _HISTOGRAM_BINS, dtype=lengths.dtype,
                             device=lengths.device)
    width = float(centers[1] - centers[0])
    smeared = torch.exp(-0.5 * ((lengths.unsqueeze(-1) - centers) / width) ** 2)
    smeared = smeared * (lengths < potential.cutoff).to(lengths.dtype).unsqueeze(-1)
    num_species = len(potential.species)
    neighbour_species = potential.species_table[graph[K.ATOMIC_NUMBERS]][receiver]
    onehot = nn.functional.one_hot(neighbour_species, num_species).to(lengths.dtype)
    per_edge = (onehot.unsqueeze(-1) * smeared.unsqueeze(1)).reshape(len(lengths), -1)
    return scatter_sum(per_edge, sender, positions.shape[0])
