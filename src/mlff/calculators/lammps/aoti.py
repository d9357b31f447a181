"""Deploy a model for LAMMPS as an AOTInductor package (``model.pt2``).

The package holds the model compiled ahead of time to native code by PyTorch's
AOTInductor: ``torch.export`` captures the forward pass together with its backward pass
(the forces) as one graph of ATen operations with symbolic numbers of atoms and edges,
and Inductor compiles that graph to a shared library that libtorch's AOTI runtime
(``torch::inductor::AOTIModelPackageLoader``) runs from C++ without Python and without
TorchScript. The contract is that of the TorchScript module (:mod:`.deploy`), with the
number of local nodes as a tensor::

    node_energy, edge_grad = package(species, edge_index, edge_vectors, num_local)

    species       (N,) int64        index of each node's element in the model's species
    edge_index    (2, E) int64      sender i, receiver j of each directed edge
    edge_vectors  (E, 3) dtype      r_ij = x_j - x_i, Å
    num_local     () int64          nodes 0..num_local-1 are the atoms this process owns
    dense_width   (D,) int8         D >= the most edges of one node as sender and as
                                    receiver (values unused): the width of the dense
                                    neighbour layout (:mod:`mlff.nn.dense`), which an
                                    exported program cannot read from the edges
    -> node_energy  (K, N) float64  per-node energies of each of the K members, eV
    -> edge_grad    (K, E, 3) dtype dE_local/dr_ij of each member, eV/Å

The deployment metadata (:func:`.deploy.deployed_metadata`) is stored in the package's
metadata: the whole of it as JSON under ``mlff_metadata``, and the fields the plugin
reads as plain strings (``symbols`` and ``masses`` space-separated).

Compilation takes a C++ compiler and time (about a minute for a small model, several
for a large MACE, on one core); the package runs only on the device it was compiled
for (CPU, or CUDA when exported there). Chunked evaluation of large systems is done by
the plugin around the package (the same receptive-field subgraphs as the TorchScript
module's ``forward``).

The exported program runs the ASE calculator's fast path: the dense neighbour sums of
MACE, NequIP and SevenNet, whose width the caller passes as the size of ``dense_width``
(the plugin counts it from the neighbour list; the layout is then always used). DeepPot's
per-type networks run on every row, each row keeping its own type's output (the eager
model splits the rows by counts read from the data, which ``torch.export`` cannot trace):
as fast as the split for one species, slower for several (:func:`default_format`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from mlff.calculators.lammps.members import (
    DEPLOY_FORMAT_VERSION,
    deployed_metadata,
    members_of,
    memory_per_edge,
)
from mlff.data import keys as K
from mlff.errors import ModelFileError
from mlff.models.potential import NodeEnergies, Potential

AOTI_NAME = "model.pt2"
METADATA_KEY = "mlff_metadata"
# the metadata fields the plugin reads (package metadata holds strings only)
PLUGIN_FIELDS = ("format_version", "symbols", "masses", "cutoff", "num_message_passing",
                 "interaction_range", "dtype", "committee_size", "memory_per_edge",
                 "dense_width_input")


def export_blocker(potential: Potential) -> str | None:
    """Why torch.export cannot capture ``potential``'s architecture (None: it can)."""
    return getattr(type(potential.model), "export_blocker", None)


class _EagerMember(NodeEnergies, nn.Module):
    """One potential as the exported graph needs it: per-node energies, eager PyTorch."""

    def __init__(self, potential: Potential) -> None:
        super().__init__()
        self.model = copy.deepcopy(potential.model).eval()
        if hasattr(self.model, "exportable"):
            self.model.exportable = True  # its traceable path (DeepPot's per-type nets)
        self.register_buffer("e0s", potential.e0s.detach().clone())
        self.register_buffer("scale", potential.scale.detach().clone())
        self.register_buffer("shift", potential.shift.detach().clone())
        self.register_buffer("atomic_numbers",
                             torch.tensor(potential.species, dtype=torch.int64))
        self.pair_terms = nn.ModuleList(copy.deepcopy(t).eval() for t in potential.pair_terms)

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor,
                edge_vectors: torch.Tensor, dense_width: torch.Tensor) -> torch.Tensor:
        """(N,) float64 node energies, eV: the Potential's own
        :meth:`~mlff.models.potential.NodeEnergies.node_energies`, with the dense
        neighbour sums (where the architecture has them) of width ``len(dense_width)``."""
        graph = {K.SPECIES: species, K.ATOMIC_NUMBERS: self.atomic_numbers[species],
                 K.EDGE_INDEX: edge_index, K.EDGE_VECTORS: edge_vectors,
                 K.EDGE_LENGTHS: torch.linalg.norm(edge_vectors, dim=-1),
                 K.DENSE_WIDTH: dense_width}
        return self.node_energies(graph)


class ExportableModel(nn.Module):
    """Energies and edge gradients of all members (the contract in the module docstring)."""

    def __init__(self, members: Sequence[Potential]) -> None:
        super().__init__()
        self.members = nn.ModuleList(_EagerMember(p) for p in members)

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor,
                edge_vectors: torch.Tensor, num_local: torch.Tensor, dense_width: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        local = torch.arange(species.shape[0], device=species.device) < num_local
        energies, grads = [], []
        for member in self.members:
            vectors = edge_vectors.detach().requires_grad_(True)
            node_energy = member(species, edge_index, vectors, dense_width)
            counted = torch.where(local, node_energy, torch.zeros_like(node_energy)).sum()
            (grad,) = torch.autograd.grad([counted], [vectors], allow_unused=True)
            energies.append(node_energy.detach())
            grads.append(torch.zeros_like(vectors) if grad is None else grad)
        return torch.stack(energies), torch.stack(grads)


def _example_inputs(members: Sequence[Potential], device: torch.device
                    ) -> tuple[torch.Tensor, ...]:
    """A small periodic graph to trace with (every species, more than two nodes and edges)."""
    from mlff.data.neighbors import neighbor_list

    first = members[0]
    side = 3
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)],
                    float)
    rng = np.random.default_rng(0)
    numbers = [first.species[i % len(first.species)] for i in range(len(grid))]
    atoms = Atoms(numbers, positions=2.2 * grid + rng.uniform(-0.1, 0.1, grid.shape),
                  cell=np.eye(3) * 2.2 * side, pbc=True)
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc,
                                       first.cutoff)
    vectors = (atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]]
               + shifts @ atoms.cell.array)
    species = torch.tensor([i % len(first.species) for i in range(len(atoms))], device=device)
    edge_index = torch.as_tensor(np.asarray(edge_index), device=device)
    width = dense_width(edge_index, len(atoms))
    # a width unlike the graph's other sizes: equal sizes would share one symbol in the trace
    while width in (len(atoms), edge_index.shape[1], 3):
        width += 1
    return (species, edge_index, torch.tensor(vectors, dtype=first.dtype, device=device),
            torch.tensor(len(atoms) - 3, device=device), dense_input(width, device))


def dense_width(edge_index: torch.Tensor, num_nodes: int) -> int:
    """D of the package's ``dense_width`` input: the largest number of edges of one node
    as sender or receiver (each architecture lays out by one of them), at least 2."""
    if edge_index.shape[1] == 0:
        return 2
    counts = torch.stack([torch.bincount(row, minlength=num_nodes) for row in edge_index])
    return max(int(counts.max()), 2)


def dense_input(width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The package's ``dense_width`` input: (width,) int8, values unused."""
    return torch.zeros(width, dtype=torch.int8, device=device)


def export_model(members: Sequence[Potential], device: torch.device | str = "cpu"
                 ) -> torch.export.ExportedProgram:
    """The exported program of :class:`ExportableModel` with dynamic numbers of nodes and edges.

    The backward pass is captured as ordinary operations by tracing with
    ``make_fx`` (symbolic shapes), then exported, as nequip does for its AOTI models.

    Args:
        members: the potentials (frozen, in the dtype to deploy).
        device: where the package will run.

    Raises:
        ModelFileError: the architecture cannot be exported (with torch's reason).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    architecture = members[0].hyperparameters.get("architecture", "?")
    blocker = export_blocker(members[0])
    if blocker is not None:
        raise ModelFileError(f"the {architecture} architecture cannot be deployed as AOTI: "
                             f"{blocker}. Deploy it with --format torchscript.")
    device = torch.device(device)
    module = ExportableModel(members).to(device).eval()
    inputs = _example_inputs(members, device)
    nodes, edges = torch.export.Dim("nodes", min=2), torch.export.Dim("edges", min=2)
    width = torch.export.Dim("width", min=2)
    try:
        with torch.enable_grad():
            traced = make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True,
                             _error_on_data_dependent_ops=True)(*inputs)
        return torch.export.export(traced, inputs, strict=False,
                                   dynamic_shapes=({0: nodes}, {1: edges}, {0: edges}, None,
                                                   {0: width}))
    except Exception as exc:  # torch reports untraceable code with many exception types
        raise ModelFileError(
            f"the {architecture} architecture could not be exported for AOTInductor "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]}). Deploy it with "
            "--format torchscript, and report the error."
        ) from exc


def plugin_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """The package metadata: all of ``metadata`` as JSON, and the plugin's fields as strings."""
    out = {METADATA_KEY: json.dumps(metadata)}
    if metadata.get("stages_file"):  # the TorchScript stages beside it (deploy.write_stages)
        out["stages_file"] = str(metadata["stages_file"])
    for name in PLUGIN_FIELDS:
        value = metadata[name]
        out[name] = " ".join(str(v) for v in value) if isinstance(value, list) else repr(value) \
            if isinstance(value, float) else str(value)
    return out


def compile_package(program: torch.export.ExportedProgram, path: str | Path,
                    metadata: dict[str, Any]) -> tuple[Path, float]:
    """Compile ``program`` with AOTInductor into the package ``path``.

    Returns:
        The path, and the compilation time in seconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.pt2")
    started = time.perf_counter()
    torch._inductor.aoti_compile_and_package(
        program, package_path=str(tmp),
        inductor_configs={"aot_inductor.metadata": plugin_metadata(metadata)})
    tmp.replace(path)
    return path, time.perf_counter() - started


class LoadedPackage:
    """A ``model.pt2`` in Python, with the attributes of the TorchScript module.

    Calls like the TorchScript module (``num_local`` an int), for :func:`.deploy.evaluate`
    and the checks.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.metadata = read_package_metadata(self.path)
        self._runner = torch._inductor.aoti_load_package(str(self.path))
        for name in ("symbols", "cutoff", "dtype", "committee_size", "num_message_passing",
                     "interaction_range", "memory_per_edge", "format_version", "species",
                     "masses"):
            setattr(self, name, self.metadata[name])

    def __call__(self, species: torch.Tensor, edge_index: torch.Tensor,
                 edge_vectors: torch.Tensor, num_local: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = [species, edge_index, edge_vectors, torch.tensor(num_local, device=species.device)]
        if self.metadata.get("dense_width_input"):  # not in packages from before the dense sums
            inputs.append(dense_input(dense_width(edge_index, species.shape[0]), species.device))
        return self._runner(*inputs)


def read_package_metadata(path: str | Path) -> dict[str, Any]:
    """The deployment metadata stored in a ``model.pt2``.

    Raises:
        ModelFileError: not a package written by ``mlff deploy --format aoti``.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such deployed model (write one with `mlff deploy`).")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("_metadata.json")]
            for name in names:
                stored = json.loads(archive.read(name))
                if METADATA_KEY in stored:
                    return json.loads(stored[METADATA_KEY])
    except (zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not an AOTInductor package ({exc}).") from None
    raise ModelFileError(f"{path}: an AOTInductor package, but not one written by `mlff deploy`.")


def package_attributes(members: Sequence[Potential]) -> Any:
    """The deployment attributes of ``members`` (those of the TorchScript module), for
    :func:`.deploy.deployed_metadata`."""
    from types import SimpleNamespace

    from ase.data import atomic_masses, chemical_symbols

    from mlff.models.io import dtype_name

    first = members[0]
    layers = max(p.receptive_hops() for p in members)
    species = [int(z) for z in first.species]
    return SimpleNamespace(
        format_version=DEPLOY_FORMAT_VERSION, species=species,
        symbols=[chemical_symbols[z] for z in species],
        masses=[float(atomic_masses[z]) for z in species], cutoff=float(first.cutoff),
        num_message_passing=layers, interaction_range=layers * float(first.cutoff),
        dtype=dtype_name(first.dtype), committee_size=len(members),
        memory_per_edge=memory_per_edge(members), num_stages=0, feature_width=0)


def deploy_package(members: Sequence[Potential], path: str | Path, source: dict[str, Any],
                   extra: dict[str, Any] | None = None, device: torch.device | str = "cpu"
                   ) -> tuple[Path, dict[str, Any], float]:
    """Export and compile ``members`` (prepared: frozen, in their dtype) into ``path``.

    Returns:
        The package, its metadata (with ``extra`` added, e.g. dispersion) and the
        compilation time in seconds (export included).

    Raises:
        ModelFileError: the architecture cannot be exported.
    """
    started = time.perf_counter()
    metadata = deployed_metadata(package_attributes(members), source)
    metadata["format"] = "aoti"
    metadata["dense_width_input"] = 1  # the plugin passes the fifth input
    metadata.update(extra or {})
    program = export_model(members, device)
    path, _ = compile_package(program, path, metadata)
    return path, metadata, time.perf_counter() - started


def exportable(model: Any) -> bool:
    """Whether every member's architecture can be exported (:func:`export_blocker`)."""
    return all(export_blocker(m) is None for m in members_of(model))


def default_format(model: Any) -> str:
    """``aoti`` where the package is measured faster and every member can be exported,
    else ``torchscript``. Each member's ``deploy_format`` is read from its model (the
    architecture's class attribute, or one the model sets for its own size)."""
    if not exportable(model):
        return "torchscript"
    formats = {getattr(m.model, "deploy_format", "torchscript") for m in members_of(model)}
    return "aoti" if formats == {"aoti"} else "torchscript"
