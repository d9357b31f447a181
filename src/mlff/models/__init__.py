"""Architectures, the Potential wrapper, the registry and the model file."""

from mlff.models.io import load_model, read_metadata, save_model
from mlff.models.potential import Potential
from mlff.models.registry import architectures, build_model, get_architecture

__all__ = [
    "Potential",
    "architectures",
    "build_model",
    "get_architecture",
    "load_model",
    "read_metadata",
    "save_model",
]
