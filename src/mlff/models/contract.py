"""The architecture contract: what every registered architecture tells the rest of mlff.

A registered model class subclasses :class:`Architecture` and answers, from its own
hyperparameters and modules, what other parts of mlff would otherwise guess from names:

- :meth:`Architecture.receptive_hops`: how many edges away an atom's energy can feel
  another atom (chunked evaluation, LAMMPS ghost atoms);
- :meth:`Architecture.invariant_features`: rotation-invariant per-atom features (the
  descriptors of diverse selection in :mod:`mlff.uq.descriptors`);
- :meth:`Architecture.species_parameters` and :meth:`Architecture.grow_species`: the
  tensors with per-element entries, and the same model with more elements whose
  predictions for the old ones are unchanged (fine-tuning on new elements);
- ``presets``: hyperparameters of a ``small``, ``medium`` and ``large`` model;
- :meth:`Architecture.conventions`: the library and coupling convention its weights
  assume, recorded in the model file.

``tests/models/test_contract.py`` checks every entry of the registry against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mlff.nn.dtype import default_dtype
from mlff.nn.species import SpeciesIndex, carry

PRESET_SIZES = ("small", "medium", "large")
# e3nn's real spherical harmonics with "component" normalisation and l=1 in (y, z, x)
# order; its Wigner 3j symbols couple them. Weights trained under one convention are
# meaningless under another.
E3NN_COUPLING = "e3nn-o3 (real spherical harmonics, component normalisation, l=1 as y,z,x)"


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


def build_architecture(cls: type[nn.Module], hyperparameters: dict[str, Any],
                       num_species: int) -> nn.Module:
    """Validate ``hyperparameters`` with ``cls.Config`` and build ``cls`` for ``num_species``
    species, its parameters in float64 (cast it with ``.to(dtype)``)."""
    config = cls.Config.model_validate(hyperparameters)
    # built in float64 and cast later: e3nn's coupling coefficients made in float32 and
    # cast up would carry 1e-8 errors into float64 models
    with default_dtype(torch.float64):
        return cls(config, num_species)


class Grown(NamedTuple):
    """The result of :meth:`Architecture.grow_species`.

    Attributes:
        model: the architecture with more species.
        fresh: per state-dict name, a bool mask of the entries that belong to the new
            species (freshly initialised); tensors without any are left out.
    """

    model: nn.Module
    fresh: dict[str, torch.Tensor]


class Architecture(nn.Module):
    """Base class of the registered architectures (see the module docstring).

    A subclass has a nested pydantic ``Config`` (a :class:`ModelConfig`),
    a class attribute ``presets`` (``{"small": {...}, "medium": {...}, "large": {...}}``,
    hyperparameters over the Config's defaults), is built as ``cls(config, num_species)``
    and keeps ``config`` and ``num_species`` as attributes.
    """

    # no class annotations here: TorchScript would read them as module attributes
    presets = {}  # type: dict[str, dict[str, Any]]
    # why torch.export cannot capture the architecture (None: it can, and AOTInductor
    # packages for LAMMPS can be built from it)
    export_blocker = None  # type: str | None
    # the LAMMPS deployment format measured faster for it (benchmarks/lammps_speed.py
    # --formats): "torchscript" or "aoti"
    deploy_format = "torchscript"

    @classmethod
    def receptive_hops(cls, config: Any) -> int:
        """Graph hops (edges shorter than the cutoff) over which an atom's energy depends
        on other atoms, for the validated hyperparameters ``config``."""
        raise NotImplementedError

    @classmethod
    def from_data(cls, hyperparameters: dict[str, Any],
                  mean_num_neighbors: float) -> dict[str, Any]:
        """``hyperparameters`` with those left ``null`` ("from the data") filled in from the
        training set: ``avg_num_neighbors`` (a normalisation) of the architectures whose
        Config has it, from the mean number of neighbours per atom."""
        filled = dict(hyperparameters)
        fields = cls.Config.model_fields  # type: ignore[attr-defined]
        if "avg_num_neighbors" in fields and filled.get("avg_num_neighbors") is None:
            filled["avg_num_neighbors"] = float(mean_num_neighbors)
        return filled

    @classmethod
    def conventions(cls) -> dict[str, str]:
        """The library versions and conventions the weights assume (model-file metadata);
        empty for plain torch layers."""
        return {}

    def invariant_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rotation-invariant per-atom features (N, F) that feed the energy readout.

        Args:
            inputs: the graph dict the architecture's forward receives (with species,
                edge vectors and lengths; see :meth:`mlff.models.Potential.inputs`).
        """
        raise NotImplementedError

    def species_parameters(self) -> dict[str, SpeciesIndex]:
        """The state-dict tensors (parameters and buffers) with per-species entries."""
        raise NotImplementedError

    def grow_species(self, positions: Sequence[int], num_species: int) -> Grown:
        """This model with ``num_species`` species; old species ``s`` becomes ``positions[s]``.

        The new model is built from the registry (its new species' entries are the
        architecture's own initialisation, from torch's random state: seed it), in this
        model's dtype and device. Every other entry is carried over, so predictions for
        structures of the old species do not change.
        """
        if len(positions) != self.num_species or len(set(positions)) != len(positions):
            raise ValueError(f"positions {list(positions)} for {self.num_species} species")
        reference = next(iter(self.state_dict().values()))
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), reference.dtype)
        grown = build_architecture(type(self), self.config.model_dump(), num_species).to(
            device=reference.device, dtype=dtype)
        old_index, new_index = self.species_parameters(), grown.species_parameters()
        old_state = self.state_dict()
        state, fresh = {}, {}
        for name, value in grown.state_dict().items():
            if name in new_index:
                state[name], fresh[name] = carry(old_state[name], value, old_index[name],
                                                 new_index[name], positions)
            elif old_state[name].shape != value.shape:
                raise ValueError(f"{type(self).__name__}: {name} changes shape with the number "
                                 "of species but is not among its species_parameters()")
            else:
                state[name] = old_state[name]
        grown.load_state_dict(state, strict=True)
        return Grown(grown, fresh)


def hyperparameters_from_data(architecture: type, hyperparameters: dict[str, Any],
                              mean_num_neighbors: float) -> dict[str, Any]:
    """:meth:`Architecture.from_data` of a registered class, also of one that does not
    subclass :class:`Architecture` (its default then applies)."""
    if issubclass(architecture, Architecture):
        return architecture.from_data(hyperparameters, mean_num_neighbors)
    return Architecture.from_data.__func__(architecture, hyperparameters, mean_num_neighbors)


def hooked_features(model: nn.Module, inputs: dict[str, torch.Tensor], path: str,
                    use_input: bool) -> torch.Tensor:
    """The input (``use_input``) or output of submodule ``path`` in a forward pass of
    ``model`` on ``inputs``, detached."""
    module = model.get_submodule(path)
    captured: list[torch.Tensor] = []

    def hook(_module, args, output):
        captured.append((args[0] if use_input else output).detach())

    handle = module.register_forward_hook(hook)
    try:
        model(inputs)
    finally:
        handle.remove()
    return captured[0]


def e3nn_conventions() -> dict[str, str]:
    """:meth:`Architecture.conventions` of an architecture built on e3nn."""
    import e3nn

    return {"e3nn": e3nn.__version__, "coupling": E3NN_COUPLING}


_HISTOGRAM_BINS = 12


def radial_histogram(inputs: dict[str, torch.Tensor], cutoff: float,
                     num_species: int) -> torch.Tensor:
    """Per atom and neighbour species, Gaussian-smeared counts of neighbour distances:
    (N, num_species · 12) invariant features of a model without a per-atom feature
    vector before its readout (one per edge, or one per neighbour species)."""
    from mlff.data import keys as K
    from mlff.nn import scatter_sum

    sender, receiver = inputs[K.EDGE_INDEX]
    lengths = inputs[K.EDGE_LENGTHS]
    centers = torch.linspace(0.5, cutoff, _HISTOGRAM_BINS, dtype=lengths.dtype,
                             device=lengths.device)
    width = float(centers[1] - centers[0])
    smeared = torch.exp(-0.5 * ((lengths.unsqueeze(-1) - centers) / width) ** 2)
    smeared = smeared * (lengths < cutoff).to(lengths.dtype).unsqueeze(-1)
    neighbour_species = inputs[K.SPECIES][receiver]
    onehot = nn.functional.one_hot(neighbour_species, num_species).to(lengths.dtype)
    per_edge = (onehot.unsqueeze(-1) * smeared.unsqueeze(1)).reshape(len(lengths), -1)
    return scatter_sum(per_edge, sender, inputs[K.POSITIONS].shape[0])
