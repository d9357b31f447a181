"""What every deployment format shares: the members to deploy (copies, frozen, in the
chosen dtype), the memory one evaluation takes per edge (for the plugin's chunking), and
the metadata that `model.json` and the packages carry.

Used by :mod:`.deploy` (TorchScript) and :mod:`.aoti` (AOTInductor packages).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms

from mlff.data.neighbors import neighbor_list
from mlff.errors import ConfigError
from mlff.models.potential import Potential
from mlff.models.precision import torch_dtype

# the version of the plugin's contract (deploy.py's module docstring); the plugin refuses others
DEPLOY_FORMAT_VERSION = 1


def members_of(model: Any) -> list[Potential]:
    """The potentials of ``model``: itself, or a committee's members."""
    if isinstance(model, Potential):
        return [model]
    members = getattr(model, "members", None)
    if members is not None and all(isinstance(m, Potential) for m in members):
        return list(members)
    raise ConfigError(f"cannot deploy a {type(model).__name__}: expected a Potential or a committee.")


def prepared_members(model: Any, dtype: torch.dtype | str | None = None) -> list[Potential]:
    """Copies of the members of ``model`` to deploy: on the CPU, in ``dtype``, frozen."""
    members = [copy.deepcopy(m).cpu().eval() for m in members_of(model)]
    if dtype is not None:
        dtype = torch_dtype(dtype) if isinstance(dtype, str) else dtype
        members = [m.to(dtype=dtype) for m in members]
    for member in members:
        # frozen parameters, as in the ASE calculator: the forward pass then saves no
        # tensors for weight gradients (about 10% of a MACE step, and memory)
        member.requires_grad_(False)
    return members

def memory_per_edge(members: Sequence[Potential], peak_factor: float = 2.0) -> float:
    """Bytes one evaluation takes per edge, for the plugin's automatic chunking.

    Measured as the ASE calculator plans its chunks (:func:`mlff.models.chunked.plan_chunk_size`):
    the tensors the forward pass saves for the forces, times ``peak_factor``, on a
    periodic grid of 216 atoms at metallic density, 2.3 Å apart, so that no surface
    lowers the neighbours per atom (the largest over members: they run one after the
    other).
    """
    from mlff.data.graph import graph_from_edges
    from mlff.data.readers import Structure
    from mlff.models.chunked import autograd_bytes

    side = 6
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)], float)
    rng = np.random.default_rng(0)
    worst = 0.0
    for member in members:
        numbers = [member.species[i % len(member.species)] for i in range(len(grid))]
        atoms = Atoms(numbers, positions=2.3 * grid + rng.uniform(-0.1, 0.1, grid.shape),
                      cell=np.eye(3) * 2.3 * side, pbc=True)
        edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc,
                                           member.cutoff)
        if edge_index.shape[1] == 0:
            continue
        graph = {key: value.to(dtype=member.dtype) if value.is_floating_point() else value
                 for key, value in graph_from_edges(Structure(atoms=atoms), edge_index, shifts).items()}
        used = autograd_bytes(member, graph, compute_stress=False)
        worst = max(worst, peak_factor * used / edge_index.shape[1])
    return float(worst)


def deployed_metadata(scripted: torch.jit.ScriptModule, source: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a deployed module: what LAMMPS needs, plus the model file's provenance."""
    return {
        "format_version": int(scripted.format_version),
        "species": list(scripted.species),
        "symbols": list(scripted.symbols),
        "masses": list(scripted.masses),
        "cutoff": float(scripted.cutoff),
        "num_message_passing": int(scripted.num_message_passing),
        "interaction_range": float(scripted.interaction_range),
        "dtype": str(scripted.dtype),
        "committee_size": int(scripted.committee_size),
        "num_stages": int(scripted.num_stages),
        "feature_width": int(scripted.feature_width),
        "memory_per_edge": float(scripted.memory_per_edge),
        "torch_version": torch.__version__,
        "units": {"energy": "eV", "length": "Å", "LAMMPS": "metal"},
        "source": source,
    }
