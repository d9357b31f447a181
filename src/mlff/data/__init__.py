"""Structures, labels, neighbour lists, graph dicts, datasets and their statistics."""

from mlff.data.dataset import BatchLoader, GraphDataset
from mlff.data.graph import collate, structure_to_graph, to_device
from mlff.data.readers import LabelKeys, Structure, read_structures, structure_from_atoms

__all__ = [
    "BatchLoader",
    "GraphDataset",
    "LabelKeys",
    "Structure",
    "collate",
    "read_structures",
    "structure_from_atoms",
    "structure_to_graph",
    "to_device",
]
