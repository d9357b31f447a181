"""A committee (ensemble) of potentials: the mean prediction and the members' disagreement.

K potentials with the same species and cutoff, trained from different seeds (and
optionally bootstrap resamples of the data), evaluate one graph dict. The committee's
prediction is the members' mean; where they disagree, the model is extrapolating.

Disagreement (population statistics over the K members, as DP-GEN's model deviation):
    ``forces_std``  (N,)   eV/Å   σ_i = sqrt( (1/K) Σ_k |F_ki − F̄_i|² ), per atom
    ``energy_std``  (B,)   eV     std_k(E_k), per structure
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import torch
from torch import nn

from mlff.data import keys as K
from mlff.models.potential import Potential

MEMBER_ENERGY = "member_energy"  # (K, B) eV
MEMBER_FORCES = "member_forces"  # (K, N, 3) eV/Å
FORCES_STD = "forces_std"  # (N,) eV/Å
ENERGY_STD = "energy_std"  # (B,) eV


class Committee(nn.Module):
    """K potentials evaluated together; behaves like one :class:`Potential`.

    Args:
        members: the potentials; same species (in the same order) and cutoff.
        calibration: the fitted map from disagreement to expected error (see
            :mod:`mlff.uq.calibration`), or ``None``.

    Raises:
        ValueError: fewer than two members, or members that disagree on species/cutoff.
    """

    def __init__(self, members: Sequence[Potential], calibration: dict[str, Any] | None = None) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a committee needs at least 2 members, got {len(members)}")
        first = members[0]
        for k, member in enumerate(members[1:], start=1):
            if member.species != first.species or member.cutoff != first.cutoff:
                raise ValueError(
                    f"committee member {k} has species {member.species} and cutoff "
                    f"{member.cutoff}; member 0 has {first.species} and {first.cutoff}"
                )
        self.members = nn.ModuleList(members)
        self.calibration = calibration
        self.metadata: dict[str, Any] = {}

    # the Potential interface that calculators, MD and evaluation use
    @property
    def species(self) -> list[int]:
        """Atomic numbers the committee knows."""
        return self.members[0].species

    @property
    def cutoff(self) -> float:
        """Cutoff radius, Å."""
        return self.members[0].cutoff

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters of member 0 (all members share the architecture)."""
        return self.members[0].hyperparameters

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the members."""
        return self.members[0].dtype

    @property
    def device(self) -> torch.device:
        """Device of the members."""
        return self.members[0].device

    def receptive_hops(self) -> int:
        """The largest receptive field of the members, in graph hops (see
        :meth:`Potential.receptive_hops`)."""
        return max(member.receptive_hops() for member in self.members)

    @property
    def size(self) -> int:
        """Number of members K."""
        return len(self.members)

    def check_species(self, atomic_numbers: torch.Tensor, where: str = "structure") -> None:
        """See :meth:`Potential.check_species`."""
        self.members[0].check_species(atomic_numbers, where)

    def check_structures(self, graphs: Iterable[dict[str, torch.Tensor]], sources: Sequence[str]) -> None:
        """See :meth:`Potential.check_structures`."""
        self.members[0].check_structures(graphs, sources)

    def invariant_features(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Invariant per-atom features (N, F) for selection: those of the first member
        (the members share the architecture; see :meth:`Potential.invariant_features`)."""
        return self.members[0].invariant_features(graph)

    def forward(
        self,
        graph: dict[str, torch.Tensor],
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool = False,
        energy_mask: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """Mean outputs of the members plus their spread.

        Returns the keys of :meth:`Potential.forward` (member means), and
        ``member_energy`` (K, B), ``energy_std`` (B,); with forces also
        ``member_forces`` (K, N, 3) and ``forces_std`` (N,). ``energy_mask`` is passed
        to every member (see :meth:`Potential.forward`).
        """
        outputs = [m(graph, compute_forces, compute_stress, create_graph, energy_mask)
                   for m in self.members]
        return combine_members(outputs, compute_forces)

    def combine(self, outputs: Sequence[dict[str, torch.Tensor]],
                compute_forces: bool = True) -> dict[str, torch.Tensor]:
        """This committee's output from its members' outputs (:func:`combine_members`), for
        code below this package that evaluates the members itself (chunked evaluation)."""
        return combine_members(outputs, compute_forces)


def combine_members(
    outputs: Sequence[dict[str, torch.Tensor]], compute_forces: bool = True
) -> dict[str, torch.Tensor]:
    """A committee's output from its members' outputs (each as :meth:`Potential.forward`).

    Returns:
        The members' mean of every key, plus ``member_energy`` (K, B) and ``energy_std``
        (B,) eV; with ``compute_forces`` also ``member_forces`` (K, N, 3) and
        ``forces_std`` (N,) eV/Å.
    """
    out = {key: torch.stack([o[key] for o in outputs]).mean(dim=0) for key in outputs[0]}
    energies = torch.stack([o[K.ENERGY] for o in outputs])
    out[MEMBER_ENERGY] = energies
    out[ENERGY_STD] = energies.std(dim=0, unbiased=False)
    if compute_forces:
        forces = torch.stack([o[K.FORCES] for o in outputs])
        out[MEMBER_FORCES] = forces
        out[FORCES_STD] = disagreement(forces)
    return out


def disagreement(member_forces: torch.Tensor) -> torch.Tensor:
    """Per-atom force disagreement σ_i = sqrt((1/K) Σ_k |F_ki − F̄_i|²), eV/Å.

    Args:
        member_forces: (K, N, 3) forces of each member, eV/Å.

    Returns:
        (N,) tensor.
    """
    deviation = member_forces - member_forces.mean(dim=0, keepdim=True)
    return deviation.square().sum(dim=-1).mean(dim=0).sqrt()
