"""Structures, labels, neighbour lists, graph dicts, datasets and their statistics."""

from mlff.data.dataset import BatchLoader, GraphDataset
from mlff.data.graph import collate, structure_to_graph, to_device
from mlff.data.packed import ChunkedShuffleLoader, PackedDataset, pack
from mlff.data.readers import (
    LabelKeys,
    Structure,
    iter_structures,
    read_structures,
    structure_from_atoms,
)

__all__ = [
    "BatchLoader",
    "ChunkedShuffleLoader",
    "GraphDataset",
    "LabelKeys",
    "PackedDataset",
    "Structure",
    "collate",
    "iter_structures",
    "pack",
    "read_structures",
    "structure_from_atoms",
    "structure_to_graph",
    "to_device",
]
