"""The Potential: any architecture plus E0s, scale/shift, forces and stress by autograd.

``E = Σ_i [E0(Z_i) + shift + scale · ε_i + V_i]`` where ε_i is the architecture's per-atom
output and V_i the physical pair terms the hyperparameters ask for (``zbl: true``: ZBL
nuclear repulsion, :mod:`mlff.nn.zbl`), in eV, whatever the architecture. Forces are ``-dE/dr`` and the stress ``(1/V) dE/dε`` for a symmetric strain ε
applied to positions and cell, both by automatic differentiation, so energy, forces and
stress are always consistent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import torch
from ase.data import chemical_symbols
from torch import nn

from mlff.data import keys as K
from mlff.data.edges import edge_vectors
from mlff.errors import ConfigError, UnknownElementError
from mlff.models.registry import get_architecture
from mlff.nn import scatter_sum
from mlff.nn.zbl import ZBLRepulsion

_NUM_ELEMENTS = len(chemical_symbols)

def receptive_hops(hyperparameters: dict[str, Any]) -> int:
    """The receptive field of an architecture in graph hops (edges of length < cutoff).

    An atom's energy depends on the atoms at most this many edges away, as the
    architecture tells (:meth:`mlff.models.contract.Architecture.receptive_hops`); missing
    hyperparameters take the architecture's defaults.

    Raises:
        ConfigError: an unregistered architecture, or hyperparameters it does not accept.
    """
    name = hyperparameters.get("architecture", "?")
    try:
        architecture = get_architecture(name)
    except KeyError as exc:
        raise ConfigError(f"architecture {name!r}: cannot tell its number of message-passing "
                          f"layers ({exc.args[0]}).") from None
    try:
        config = architecture.Config.model_validate(dict(hyperparameters))
    except ValueError as exc:
        raise ConfigError(f"architecture {name!r}: cannot tell its number of message-passing "
                          f"layers from these hyperparameters ({exc}).") from None
    return architecture.receptive_hops(config)


class NodeEnergies:
    """Per-atom energies ``E0(Z_i) + shift + scale · ε_i + V_i`` (eV, float64) of a potential.

    One definition for :class:`Potential` and the module deployed for LAMMPS
    (:mod:`mlff.calculators.lammps.deploy`, where TorchScript compiles it), which mix it in
    beside ``model`` (the architecture), ``scale``, ``shift``, ``e0s`` (float64, one per
    species) and ``pair_terms`` (modules of edge lengths, edge index, atomic numbers).
    """

    def node_energies(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) float64 node energies, eV, of the architecture's inputs (a graph dict with
        ``species``, ``atomic_numbers``, ``edge_index``, ``edge_vectors``, ``edge_lengths``)."""
        interaction = self.model(inputs) * self.scale + self.shift
        for term in self.pair_terms:
            interaction = interaction + term(inputs[K.EDGE_LENGTHS], inputs[K.EDGE_INDEX],
                                             inputs[K.ATOMIC_NUMBERS])
        return interaction.to(torch.float64) + self.e0s[inputs[K.SPECIES]]


class Potential(NodeEnergies, nn.Module):
    """Wrap an architecture into a potential energy surface (an
    :class:`mlff.models.predict.EnergyModel`).

    Args:
        model: module mapping a graph dict to per-atom outputs (N,).
        hyperparameters: the architecture's validated hyperparameters (for the model file).
        species: atomic numbers the model knows, in embedding order.
        e0s: reference energy of each species, eV, same order.
        scale: multiplies the model output, eV.
        shift: added per atom, eV.
    """

    def __init__(
        self,
        model: nn.Module,
        hyperparameters: dict[str, Any],
        species: Sequence[int],
        e0s: Sequence[float],
        scale: float = 1.0,
        shift: float = 0.0,
    ) -> None:
        super().__init__()
        if len(species) != len(e0s):
            raise ValueError(f"{len(species)=} != {len(e0s)=}")
        self.model = model
        self.hyperparameters = dict(hyperparameters)
        self.species = [int(z) for z in species]
        self.cutoff = float(hyperparameters["cutoff"])
        table = torch.full((_NUM_ELEMENTS,), -1, dtype=torch.int64)
        table[torch.tensor(self.species)] = torch.arange(len(self.species))
        self.register_buffer("species_table", table)
        default = torch.get_default_dtype()
        self.register_buffer("e0s", torch.tensor(list(e0s), dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=default))
        self.register_buffer("shift", torch.tensor(float(shift), dtype=default))
        # physical pair terms: per-atom energies (N,) in eV added to the scaled output
        self.pair_terms = nn.ModuleList()
        if hyperparameters.get("zbl", False):
            self.pair_terms.append(ZBLRepulsion(int(hyperparameters.get("zbl_envelope_exponent", 5))))
        self.metadata: dict[str, Any] = {}

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model (of ``scale`` and the parameters)."""
        return self.scale.dtype

    def _apply(self, fn, recurse=True):
        # .to(dtype) and friends: the E0s move between devices but stay float64, unrounded
        e0s = self.e0s
        result = super()._apply(fn, recurse)
        self.e0s = e0s.to(device=self.scale.device, dtype=torch.float64)
        return result

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.scale.device

    def replica(self) -> "Potential":
        """A new Potential with the same architecture, species, state and metadata, on the
        same device and in the same dtype, rebuilt from the architecture registry.

        Not a ``copy.deepcopy``: a copied e3nn tensor product regenerates its torch.fx
        code with other buffers than the original, so only a rebuilt model is certain to
        have the same state-dict keys and shapes.
        """
        from mlff.models.registry import build_model

        model = build_model(self.hyperparameters, len(self.species))
        twin = Potential(model, self.hyperparameters, self.species, self.e0s.tolist(),
                         float(self.scale), float(self.shift))
        twin.to(device=self.device, dtype=self.dtype)
        twin.load_state_dict(self.state_dict())
        twin.metadata = dict(self.metadata)
        return twin.train(self.training)

    def receptive_hops(self) -> int:
        """How many edges away an atom's energy can feel another atom (see
        :func:`receptive_hops`); the receptive field is this times ``cutoff``, Å."""
        return receptive_hops(self.hyperparameters)

    def check_species(self, atomic_numbers: torch.Tensor, where: str = "structure") -> None:
        """Raise :class:`UnknownElementError` if an element is not among the model's species."""
        unknown = sorted(set(atomic_numbers.unique().tolist()) - set(self.species))
        if unknown:
            names = ", ".join(chemical_symbols[z] if 0 <= z < _NUM_ELEMENTS else str(z) for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in self.species)
            raise UnknownElementError(
                f"{where}: element {names} is not known to this model (trained on {known}). "
                "Use a model trained on these elements, or fine-tune this one."
            )

    def check_structures(self, graphs: Iterable[dict[str, torch.Tensor]], sources: Sequence[str]) -> None:
        """:meth:`check_species` for every graph dict, naming its source (``"file:frame"``)."""
        for graph, source in zip(graphs, sources, strict=True):
            self.check_species(graph[K.ATOMIC_NUMBERS], source or "structure")

    def inputs(
        self,
        graph: dict[str, torch.Tensor],
        positions: Optional[torch.Tensor] = None,
        cell: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """The graph dict the architecture receives: ``graph`` plus ``species``,
        ``edge_vectors`` and ``edge_lengths`` (Å), from ``positions`` and ``cell`` when given
        (strained, for the stress) or else the graph's own."""
        positions = graph[K.POSITIONS] if positions is None else positions
        cell = graph[K.CELL] if cell is None else cell
        vectors = edge_vectors(positions, cell, graph[K.EDGE_INDEX], graph[K.EDGE_SHIFT],
                               graph[K.BATCH])
        inputs = dict(graph)
        inputs[K.POSITIONS] = positions
        inputs[K.EDGE_VECTORS] = vectors
        inputs[K.EDGE_LENGTHS] = torch.linalg.norm(vectors, dim=-1)
        inputs[K.SPECIES] = self.species_table[graph[K.ATOMIC_NUMBERS]]
        return inputs

    def invariant_features(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rotation-invariant per-atom features (N, F) of the architecture for ``graph``
        (:meth:`mlff.models.contract.Architecture.invariant_features`), detached."""
        with torch.enable_grad():  # a model may differentiate inside; we need its forward
            return self.model.invariant_features(self.inputs(graph)).detach()

    def forward(
        self,
        graph: dict[str, torch.Tensor],
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool = False,
        energy_mask: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """Energies, and forces and stress on request, of a graph dict (batch or single).

        Args:
            graph: a graph dict on this module's device and dtype; not modified.
            compute_forces: also return forces (N, 3), eV/Å.
            compute_stress: also return stress (B, 3, 3), eV/Å³ (zero for non-periodic
                structures).
            create_graph: keep the graph of the derivatives (training on forces).
            energy_mask: (N,) bool; when given, only these atoms' node energies are summed
                into ``energy``, so forces and stress are the derivatives of that partial
                sum (chunked evaluation, :mod:`mlff.models.chunked`). ``node_energy``
                still lists every atom.

        Returns:
            ``energy`` (B,) and ``node_energy`` (N,) in float64; ``forces`` (N, 3) and
            ``stress`` (B, 3, 3) in the model's dtype, when asked.
        """
        leaf = graph[K.POSITIONS]
        cell = graph[K.CELL]
        batch = graph[K.BATCH]
        num_structures = cell.shape[0]

        if compute_forces and not leaf.requires_grad:
            leaf = leaf.detach().requires_grad_(True)
        positions = leaf
        strain = None
        if compute_stress:
            strain = torch.zeros_like(cell).requires_grad_(True)
            symmetric = 0.5 * (strain + strain.transpose(-1, -2))
            positions = positions + torch.einsum("ni,nij->nj", positions, symmetric[batch])
            cell = cell + torch.bmm(cell, symmetric)

        inputs = self.inputs(graph, positions, cell)
        node_energy = self.node_energies(inputs)
        counted = node_energy
        if energy_mask is not None:
            counted = torch.where(energy_mask, node_energy, torch.zeros_like(node_energy))
        energy = scatter_sum(counted, batch, num_structures)
        out = {K.ENERGY: energy, K.NODE_ENERGY: node_energy}
        if not (compute_forces or compute_stress):
            return out

        wrt = ([leaf] if compute_forces else []) + ([strain] if strain is not None else [])
        grads = list(
            torch.autograd.grad([energy.sum()], wrt, create_graph=create_graph, allow_unused=True)
        )
        if compute_forces:
            grad = grads.pop(0)
            out[K.FORCES] = -grad if grad is not None else torch.zeros_like(leaf)
        if strain is not None:
            virial = grads.pop(0)
            if virial is None:
                virial = torch.zeros_like(strain)
            periodic = graph[K.PBC].all(dim=-1)
            volume = torch.linalg.det(graph[K.CELL]).abs()
            volume = torch.where(periodic, volume, torch.ones_like(volume))
            stress = virial / volume.view(-1, 1, 1)
            out[K.STRESS] = torch.where(periodic.view(-1, 1, 1), stress, torch.zeros_like(stress))
        return out
