"""Architecture registry: a name in a config maps to a model class and its hyperparameters.

A model class registered here takes ``(config, num_species)`` and maps a graph dict
(with ``species``, ``edge_index``, ``edge_vectors`` and ``edge_lengths``) to per-atom
energies of shape (N,). Its ``Config`` is a pydantic model of the hyperparameters, with a
``architecture`` literal and a ``cutoff`` in Å; unknown keys are errors.
"""

from __future__ import annotations

from typing import Any

from torch import nn

# what an architecture declares (its Config base, the decorator that registers it, the table
# of registered classes) lives in mlff.models.contract, which the architectures import: this
# module looks names up and imports the built-in architectures, so the import runs one way
from mlff.models.contract import _REGISTRY, ModelConfig, build_architecture, register

__all__ = ["ModelConfig", "architectures", "build_model", "get_architecture", "register"]


def architectures() -> list[str]:
    """Names of the registered architectures."""
    _import_builtin()
    return sorted(_REGISTRY)


def get_architecture(name: str) -> type[nn.Module]:
    """The model class registered under ``name``.

    Raises:
        KeyError: with the known names, when ``name`` is not registered.
    """
    _import_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(hyperparameters: dict[str, Any], num_species: int) -> nn.Module:
    """Validate ``hyperparameters`` with the architecture's Config and build the model.

    The model's parameters come out in float64; cast it with ``.to(dtype)``."""
    return build_architecture(get_architecture(hyperparameters["architecture"]),
                              hyperparameters, num_species)


def _import_builtin() -> None:
    # importing the modules registers them; done lazily to keep import order free
    from mlff.models import allegro, deeppot, mace, nequip, painn, schnet, sevennet  # noqa: F401
