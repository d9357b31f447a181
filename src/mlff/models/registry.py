"""Architecture registry: a name in a config maps to a model class and its hyperparameters.

A model class registered here takes ``(config, num_species)`` and maps a graph dict
(with ``species``, ``edge_index``, ``edge_vectors`` and ``edge_lengths``) to per-atom
energies of shape (N,). Its ``Config`` is a pydantic model of the hyperparameters, with a
``architecture`` literal and a ``cutoff`` in Å; unknown keys are errors.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mlff.nn.dtype import default_dtype

_REGISTRY: dict[str, type[nn.Module]] = {}


class ModelConfig(BaseModel):
    """Hyperparameters every architecture has."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    architecture: str = Field(description="registry name of the architecture")
    cutoff: float = Field(5.0, gt=0, description="interaction cutoff, Å")
    zbl: bool = Field(False, description="add ZBL nuclear repulsion (mlff.nn.zbl) to the energy")
    zbl_envelope_exponent: int = Field(
        5, ge=2, description="p of the ZBL envelope that ends at the covalent radii sum")


def register(name: str):
    """Class decorator: make a model class available under ``name``."""

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if not hasattr(cls, "Config"):
            raise TypeError(f"{cls.__name__} needs a nested pydantic Config class")
        _REGISTRY[name] = cls
        return cls

    return decorator


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
    cls = get_architecture(hyperparameters["architecture"])
    config = cls.Config.model_validate(hyperparameters)
    # built in float64 and cast later: e3nn's coupling coefficients made in float32 and
    # cast up would carry 1e-8 errors into float64 models
    with default_dtype(torch.float64):
        return cls(config, num_species)


def _import_builtin() -> None:
    # importing the modules registers them; done lazily to keep import order free
    from mlff.models import allegro, deeppot, mace, nequip, painn, schnet, sevennet  # noqa: F401
