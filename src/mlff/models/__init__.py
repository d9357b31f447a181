"""Architectures, the Potential wrapper, the registry and the model file.

Model files (single models and committees) are loaded with :func:`mlff.load_model`.
"""

from mlff.models.io import read_metadata, save_model
from mlff.models.potential import Potential
from mlff.models.registry import architectures, build_model, get_architecture

__all__ = [
    "Potential",
    "architectures",
    "build_model",
    "get_architecture",
    "read_metadata",
    "save_model",
]
