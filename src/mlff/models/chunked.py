"""Chunked evaluation: energy, forces and stress of a large structure, a piece at a time.

The autograd graph of one evaluation grows with the number of edges; for a large system
it can exceed the memory of the device. Here the atoms are split into spatially compact
chunks, and for each chunk ``S_0``:

1. the node set grows by ``hops`` graph hops along the edges,
   ``S_k = S_{k-1} ∪ {neighbours of S_{k-1}}``, where ``hops`` is the model's receptive
   field in edges (:meth:`mlff.models.Potential.receptive_hops`);
2. the subgraph of the edges whose sender and receiver are both in ``S_hops`` is cut out
   (re-indexed; cell shifts kept, so periodic images stay right);
3. the potential runs on it with only the energies of ``S_0`` summed
   (``energy_mask``), so its gradients are the forces and virial of that partial energy
   on every atom of ``S_hops``;
4. energies, node energies, forces (scatter-added back to the global atoms) and stress
   are accumulated, detached, and the chunk's autograd graph is freed.

Why it is exact: after ``l`` message-passing layers the features of an atom ``d`` hops
from ``S_0`` are right whenever ``d + l <= hops`` (all its edges are in the subgraph when
``d < hops``, and its neighbours' features are right one layer earlier), so the energies
of ``S_0`` (``d = 0``, ``l = hops``) are those of the whole structure, as functions of the
positions and the strain; the total energy is the sum over chunks, and so are its
derivatives. Results agree with an unchunked evaluation to rounding (different summation
order), for single potentials and committees alike.

Peak memory is that of the largest subgraph; the cost is the halo: each chunk also
evaluates the atoms up to ``hops · cutoff`` around it, so chunks should be much wider than
that (thousands of atoms or more) to waste little.
"""

from __future__ import annotations

import numpy as np
import torch

from mlff.data import keys as K
from mlff.errors import ConfigError, DataError
from mlff.models.potential import Potential

Graph = dict[str, torch.Tensor]


def evaluate_in_chunks(
    potential: torch.nn.Module,
    graph: Graph,
    max_atoms_per_chunk: int,
    hops: int | None = None,
    compute_stress: bool = False,
) -> Graph:
    """Energy, forces (and stress) of one structure, evaluated chunk by chunk.

    Args:
        potential: a :class:`~mlff.models.Potential`, or a committee (anything with
            ``members`` and ``combine(outputs)``, as :class:`~mlff.uq.Committee`: each
            member is run on every chunk), in eval mode.
        graph: the graph dict of a single structure, on the potential's device and dtype.
        max_atoms_per_chunk: the most atoms whose energies one chunk sums (the halo
            around them comes on top); at least 1.
        hops: the receptive field in edges; default ``potential.receptive_hops()``. A
            smaller value gives wrong results.
        compute_stress: also return the stress.

    Returns:
        As ``potential(graph, compute_forces=True, compute_stress=compute_stress)``:
        ``energy`` (1,) and ``node_energy`` (N,) in float64, eV; ``forces`` (N, 3), eV/Å,
        and with ``compute_stress`` ``stress`` (1, 3, 3), eV/Å³, in the model's dtype;
        for a committee also its ``member_*`` and ``*_std`` keys. All detached.

    Raises:
        ConfigError: ``max_atoms_per_chunk`` or ``hops`` below 1.
        DataError: ``graph`` holds more than one structure.
    """
    if int(max_atoms_per_chunk) < 1:
        raise ConfigError(f"max_atoms_per_chunk must be at least 1, got {max_atoms_per_chunk}.")
    if graph[K.NUM_ATOMS].shape[0] != 1:
        raise DataError(
            f"chunked evaluation takes one structure at a time; this graph holds "
            f"{graph[K.NUM_ATOMS].shape[0]}."
        )
    hops = potential.receptive_hops() if hops is None else int(hops)
    if hops < 1:
        raise ConfigError(f"hops must be at least 1, got {hops}.")
    committee = not isinstance(potential, Potential) and hasattr(potential, "members")
    members = list(potential.members) if committee else [potential]

    positions = graph[K.POSITIONS]
    n = positions.shape[0]
    if n <= max_atoms_per_chunk:
        out = potential(graph, compute_forces=True, compute_stress=compute_stress)
        return {key: value.detach() for key, value in out.items()}

    device = positions.device
    cutter = _ChunkCutter(graph)
    totals = [_zeros_like_output(graph, compute_stress) for _ in members]
    for chunk in _spatial_chunks_of(graph, int(max_atoms_per_chunk)):
        core = torch.as_tensor(chunk, dtype=torch.int64, device=device)
        sub, nodes, core_local = cutter.cut(core, hops)
        mask = torch.zeros(nodes.shape[0], dtype=torch.bool, device=device)
        mask[core_local] = True  # only the chunk's own atoms count; the halo is context
        for member, total in zip(members, totals):
            out = member(sub, compute_forces=True, compute_stress=compute_stress,
                         energy_mask=mask)
            total[K.ENERGY] += out[K.ENERGY].detach()
            total[K.NODE_ENERGY][core] = out[K.NODE_ENERGY].detach()[core_local]
            total[K.FORCES].index_add_(0, nodes, out[K.FORCES].detach())
            if compute_stress:
                total[K.STRESS] += out[K.STRESS].detach()
            del out
    if committee:
        return potential.combine(totals, compute_forces=True)
    return totals[0]


def spatial_chunks(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, max_atoms: int
) -> list[np.ndarray]:
    """Split the atoms into spatially compact groups of at most ``max_atoms``.

    Recursive coordinate bisection: a group larger than ``max_atoms`` is cut across its
    longest extent into two parts, sized in proportion to the chunks each will hold, until
    every part is small enough. Periodic atoms are first wrapped into the cell.

    Args:
        positions: (N, 3) Cartesian positions, Å.
        cell: (3, 3) lattice vectors as rows, Å.
        pbc: (3,) periodicity along each lattice vector.
        max_atoms: the largest group, at least 1.

    Returns:
        Sorted int64 atom indices of each group; together every atom exactly once.
    """
    coords = np.asarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if pbc.any() and abs(np.linalg.det(cell)) > 1e-12:
        fractional = np.linalg.solve(cell.T, coords.T).T
        fractional[:, pbc] %= 1.0
        coords = fractional @ cell
    groups: list[np.ndarray] = []
    stack = [np.arange(len(coords), dtype=np.int64)]
    while stack:
        group = stack.pop()
        if len(group) <= max_atoms:
            groups.append(np.sort(group))
            continue
        points = coords[group]
        axis = int(np.argmax(np.ptp(points, axis=0)))
        num_chunks = -(-len(group) // max_atoms)
        left = int(round(len(group) * (num_chunks // 2) / num_chunks))
        split = np.argpartition(points[:, axis], left - 1)
        stack += [group[split[left:]], group[split[:left]]]
    return groups


def _incident(indptr: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Positions in the receiver-sorted edge order of every edge into ``nodes``."""
    starts = indptr[nodes]
    counts = indptr[nodes + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.int64, device=nodes.device)
    offsets = torch.cumsum(counts, dim=0) - counts
    return torch.repeat_interleave(starts - offsets, counts, output_size=total) + torch.arange(
        total, device=nodes.device
    )


def _grow(
    core: torch.Tensor,
    hops: int,
    sender: torch.Tensor,
    order: torch.Tensor,
    indptr: torch.Tensor,
    in_set: torch.Tensor,
) -> torch.Tensor:
    """Sorted nodes within ``hops`` edges of ``core`` (``in_set`` is all False before and after).

    Neighbours are found along the edges into each node (their senders); the neighbour
    list is full (both directions of every pair), so these are all its neighbours.
    """
    in_set[core] = True
    nodes = [core]
    frontier = core
    for _ in range(hops):
        if frontier.numel() == 0:
            break
        neighbours = torch.unique(sender[order[_incident(indptr, frontier)]])
        frontier = neighbours[~in_set[neighbours]]
        in_set[frontier] = True
        nodes.append(frontier)
    grown = torch.sort(torch.cat(nodes)).values
    in_set[grown] = False
    return grown


def _subgraph(graph: Graph, nodes: torch.Tensor, edges: torch.Tensor, local: torch.Tensor) -> Graph:
    """The graph dict restricted to ``nodes`` and ``edges`` (``local`` maps global to local)."""
    n = graph[K.POSITIONS].shape[0]
    sub: Graph = {}
    for key, value in graph.items():
        if key == K.EDGE_INDEX:
            sub[key] = local[value[:, edges]]
        elif key == K.NUM_ATOMS:
            sub[key] = torch.full_like(value, nodes.shape[0])
        elif key in K.PER_EDGE_KEYS or key in (K.EDGE_VECTORS, K.EDGE_LENGTHS):
            sub[key] = value[edges]
        elif key in K.PER_ATOM_KEYS and value.shape[:1] == (n,):
            sub[key] = value[nodes]
        else:
            sub[key] = value
    return sub


def _zeros_like_output(graph: Graph, compute_stress: bool) -> Graph:
    positions = graph[K.POSITIONS]
    n, device = positions.shape[0], positions.device
    out = {
        K.ENERGY: torch.zeros(1, dtype=torch.float64, device=device),
        K.NODE_ENERGY: torch.zeros(n, dtype=torch.float64, device=device),
        K.FORCES: torch.zeros((n, 3), dtype=positions.dtype, device=device),
    }
    if compute_stress:
        out[K.STRESS] = torch.zeros((1, 3, 3), dtype=positions.dtype, device=device)
    return out



def autograd_bytes(potential: torch.nn.Module, graph: Graph, compute_stress: bool = False) -> int:
    """Bytes of the tensors one evaluation of ``graph`` saves for its backward pass.

    Counted with :func:`torch.autograd.graph.saved_tensors_hooks` over the forward pass
    (each storage once): the autograd graph that the forces' backward pass walks, which
    is what grows with the structure.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        potential(graph, compute_forces=True, compute_stress=compute_stress)
    return sum(storages.values())


def plan_chunk_size(potential: torch.nn.Module, graph: Graph, budget_bytes: float,
                    compute_stress: bool = False, probe_atoms: int = 1000,
                    peak_factor: float = 2.0) -> int | None:
    """Atoms per chunk so that one evaluation fits ``budget_bytes``; None: run it whole.

    The memory per edge is measured on a probe: the first spatial chunk of about
    ``probe_atoms`` atoms, evaluated without a halo (:func:`autograd_bytes`, times
    ``peak_factor`` for the buffers of the backward pass). If the whole structure's edges
    times that exceed the budget, the chunk size is the largest whose subgraph (chunk
    plus halo, the halo's thickness counted around the probe chunk) fits.

    Args:
        potential: a Potential or committee, in eval mode.
        graph: one structure's graph dict on the potential's device and dtype.
        budget_bytes: memory one evaluation may take.
        compute_stress: whether the evaluations compute the stress.
        probe_atoms: atoms of the probe chunk (evaluated without its halo).
        peak_factor: peak memory of an evaluation over its saved tensors.
    """
    n = graph[K.POSITIONS].shape[0]
    num_edges = graph[K.EDGE_INDEX].shape[1]
    if n <= probe_atoms:
        probe, core, grown = graph, n, n
    else:
        # memory per edge is a property of the model: the probe evaluates a compact chunk
        # without its halo (cheap, whatever the receptive field); the halo is only counted
        cutter = _ChunkCutter(graph)
        core_atoms = torch.as_tensor(_spatial_chunks_of(graph, probe_atoms)[0],
                                     device=graph[K.POSITIONS].device)
        probe = cutter.cut(core_atoms, 0)[0]
        core = len(core_atoms)
        grown = cutter.cut(core_atoms, potential.receptive_hops())[1].shape[0]
    probe_edges = max(int(probe[K.EDGE_INDEX].shape[1]), 1)
    per_edge = peak_factor * autograd_bytes(potential, probe, compute_stress) / probe_edges
    if per_edge * num_edges <= budget_bytes:
        return None
    degree = num_edges / n
    affordable_atoms = budget_bytes / (per_edge * degree)  # chunk plus halo
    # subgraph atoms ~ (core^(1/3) + halo)^3, the halo thickness taken from the probe
    halo = grown ** (1 / 3) - core ** (1 / 3)
    side = affordable_atoms ** (1 / 3) - halo
    return max(int(side**3), 1) if side > 0 else 1


def _spatial_chunks_of(graph: Graph, max_atoms: int) -> list[np.ndarray]:
    """:func:`spatial_chunks` of a one-structure graph dict."""
    return spatial_chunks(graph[K.POSITIONS].detach().cpu().double().numpy(),
                          graph[K.CELL][0].detach().cpu().double().numpy(),
                          graph[K.PBC][0].cpu().numpy(), max_atoms)


class _ChunkCutter:
    """Cuts chunks grown by some hops out of one structure's graph dict.

    Holds the edges grouped by receiver (CSR: the edges into node j are
    ``order[indptr[j]:indptr[j+1]]``) and two scratch arrays, reset after every cut.
    """

    def __init__(self, graph: Graph) -> None:
        n = graph[K.POSITIONS].shape[0]
        device = graph[K.POSITIONS].device
        self.graph = graph
        self.sender, receiver = graph[K.EDGE_INDEX][0], graph[K.EDGE_INDEX][1]
        self.order = torch.argsort(receiver, stable=True)
        self.indptr = torch.zeros(n + 1, dtype=torch.int64, device=device)
        self.indptr[1:] = torch.cumsum(torch.bincount(receiver, minlength=n), dim=0)
        self.in_set = torch.zeros(n, dtype=torch.bool, device=device)
        self.local = torch.full((n,), -1, dtype=torch.int64, device=device)

    def cut(self, core: torch.Tensor, hops: int) -> tuple[Graph, torch.Tensor, torch.Tensor]:
        """(subgraph, its global node ids, the local ids of ``core``) of ``core`` grown by ``hops``."""
        nodes = _grow(core, hops, self.sender, self.order, self.indptr, self.in_set)
        self.in_set[nodes] = True
        edges = self.order[_incident(self.indptr, nodes)]  # edges into the grown set ...
        edges = edges[self.in_set[self.sender[edges]]]  # ... from inside it
        self.in_set[nodes] = False
        self.local[nodes] = torch.arange(nodes.shape[0], device=nodes.device)
        sub = _subgraph(self.graph, nodes, edges, self.local)
        core_local = self.local[core]
        self.local[nodes] = -1
        return sub, nodes, core_local
