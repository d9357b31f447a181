"""Equivariance of the internal features of e3nn-based architectures.

An equivariant architecture exposes ``equivariant_features(inputs) -> (features, irreps)``:
its last internal features of shape (N or E, irreps.dim) in e3nn's layout, for the model
inputs dict that :class:`mlff.models.Potential` builds (species, edge vectors and lengths).
Rotating the structure by R must map the features to ``features @ D(R).T`` with
``D = irreps.D_from_matrix(R)``; with parity, an improper R (det -1) includes the
inversion, so odd-parity irreps flip sign.

The rotated structure reuses the original neighbour list, so per-edge features keep
their order.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from e3nn import o3

from mlff.data import keys as K
from mlff.models import Potential
from mlff.nn.dtype import default_dtype
from tests import helpers

DTYPE = torch.float64


def model_inputs(potential: Potential, graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inputs dict the Potential hands its model (edge vectors, lengths, species)."""
    sender, receiver = graph[K.EDGE_INDEX]
    cell = graph[K.CELL][graph[K.BATCH][sender]]
    vectors = (graph[K.POSITIONS][receiver] - graph[K.POSITIONS][sender]
               + torch.einsum("ei,eij->ej", graph[K.EDGE_SHIFT], cell))
    inputs = dict(graph)
    inputs[K.EDGE_VECTORS] = vectors
    inputs[K.EDGE_LENGTHS] = torch.linalg.norm(vectors, dim=-1)
    inputs[K.SPECIES] = potential.species_table[graph[K.ATOMIC_NUMBERS]]
    return inputs


def rotated_graph(graph: dict[str, torch.Tensor], rotation: np.ndarray) -> dict[str, torch.Tensor]:
    """``graph`` with positions and cell rotated by ``rotation`` (same edges)."""
    r = torch.as_tensor(rotation, dtype=DTYPE)
    out = dict(graph)
    out[K.POSITIONS] = graph[K.POSITIONS] @ r.T
    out[K.CELL] = graph[K.CELL] @ r.T
    return out


def feature_equivariance_error(
    architecture: str, atoms: Atoms, rotation: np.ndarray, cutoff: float = 4.0, **overrides
) -> tuple[float, float, o3.Irreps]:
    """Largest |f(Rx) - f(x) D(R)^T| and largest |f| for a tiny random model, and the irreps."""
    potential = helpers.build_potential(architecture, cutoff=cutoff, dtype=DTYPE, **overrides)
    graph = helpers.graph_of(atoms, cutoff, DTYPE)
    with torch.no_grad():
        features, irreps = potential.model.equivariant_features(model_inputs(potential, graph))
        turned, _ = potential.model.equivariant_features(
            model_inputs(potential, rotated_graph(graph, rotation)))
    irreps = o3.Irreps(irreps)
    with default_dtype(DTYPE):  # e3nn builds its so(3) generators in the default dtype
        d = irreps.D_from_matrix(torch.as_tensor(rotation, dtype=DTYPE))
    expected = features @ d.T
    return float((turned - expected).abs().max()), float(features.abs().max()), irreps
