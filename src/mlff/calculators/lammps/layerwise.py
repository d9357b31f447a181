"""Message-passing models split into stages, for parallel LAMMPS runs that exchange features.

With several MPI ranks, ``pair_style mlff`` can give each rank ghost atoms out to one
cutoff (+ skin) only, instead of the model's whole receptive field, by running the model
one message-passing layer at a time and copying the owners' node features to their ghost
copies between layers (LAMMPS forward communication); in the backward pass the gradients
with respect to the ghost copies' features go back to their owners (reverse
communication). This module holds the model side of that scheme: a *split* of an
architecture into ``num_stages`` stages, each one message-passing layer::

    features', node_energy = split(stage, features, species, atomic_numbers,
                                   edge_index, edge_vectors, num_local)

    stage          int: 0 .. num_stages - 1
    features       (N, D_in) dtype: node features (stage 0 ignores them: (N, 0) or empty)
    species        (N,) int64, atomic_numbers (N,) int64
    edge_index     (2, E) int64: sender, receiver (``edge_vectors`` = x_receiver - x_sender)
    num_local      int: nodes 0 .. num_local - 1 are the rank's own atoms (the central
                   atoms of all edges); a split may leave the other rows of its outputs 0
    -> features'   (N, D_out) dtype: the features after this stage's layer, exact on the
                   nodes all of whose edges are in the graph (the local atoms)
    -> node_energy (N,) dtype: this stage's contribution to each node's energy (the
                   architecture's output units; the deployed member scales it)

The model's per-atom energy is the sum of the stages' node energies, given that the
features entering stage s > 0 equal the previous stage's output on every node. The graph
a rank builds holds every edge whose *central* atom (``center_index``: the row of
``edge_index`` that receives the messages, 1 for SchNet, PaiNN and MACE, 0 for NequIP) is
one of its atoms; ghost rows of the output are wrong and are replaced by their owners'
values before the next stage. Every stage recomputes its edge quantities (harmonics,
radial basis) from ``edge_vectors``, so that a stage's autograd graph starts at its two
inputs, features and edge vectors.

:func:`split_architecture` returns the split of an architecture module, or None for one
that cannot be split (it then keeps the receptive-field halo); strictly local models
(Allegro, DeepPot-SE) need neither. :func:`run_partitioned` runs a split on a structure
divided into domains exactly as the plugin does (a reference for the C++ driver).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch
from torch import nn

from mlff.models.mace import MACEInteraction
from mlff.nn.dense import dense_slots, to_dense, worth_padding


def _plan_dense(center: torch.Tensor, num_nodes: int, num_local: int
                ) -> tuple[bool, torch.Tensor, int]:
    """:func:`mlff.nn.dense.plan_dense`, judged on the local nodes: ghost nodes are
    central to no edge, and their empty rows should not push a rank to the slower
    scatter sums (all nodes keep a row: the dense sums need one per node)."""
    slots, width = dense_slots(center, num_nodes)
    return worth_padding(center.shape[0], max(num_local, 1), width), slots, width


class _Split(nn.Module):
    """Base class: ``num_stages``, ``center_index`` and the stage's node count helper."""

    def __init__(self, model: nn.Module, num_stages: int, center_index: int) -> None:
        super().__init__()
        self.model = model
        self.num_stages = num_stages
        self.center_index = center_index


class SchNetSplit(_Split):
    """SchNet: stage k is interaction block k (the embedding in stage 0, the readout in
    the last); features are the atom features (N, num_features)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, len(model.interactions), 1)

    def forward(self, stage: int, features: torch.Tensor, species: torch.Tensor,
                atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                edge_vectors: torch.Tensor, num_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage (see the module docstring)."""
        sender, receiver = edge_index[0], edge_index[1]
        lengths = torch.linalg.norm(edge_vectors, dim=-1)
        radial = self.model.radial(lengths)
        envelope = self.model.envelope(lengths)
        x = self.model.embedding(species) if stage == 0 else features
        for k, interaction in enumerate(self.model.interactions):
            if k == stage:
                x = x + interaction(x, radial, envelope, sender, receiver)
        energy = x.new_zeros(x.shape[0])
        if stage == self.num_stages - 1:
            energy = self.model.readout(x).squeeze(-1)
        return x, energy


class PaiNNSplit(_Split):
    """PaiNN: stage k is message and update block k; features are the scalars s (N, F)
    and the vectors v (N, 3, F) side by side, (N, 4F)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, int(model.num_layers), 1)
        self.num_features = int(model.num_features)

    def forward(self, stage: int, features: torch.Tensor, species: torch.Tensor,
                atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                edge_vectors: torch.Tensor, num_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage (see the module docstring)."""
        f = self.num_features
        sender, receiver = edge_index[0], edge_index[1]
        lengths = torch.linalg.norm(edge_vectors, dim=-1)
        directions = edge_vectors / lengths.unsqueeze(-1)
        filters = self.model.filter_net(self.model.radial(lengths)) \
            * self.model.envelope(lengths).unsqueeze(-1)
        filters = torch.split(filters, 3 * f, dim=-1)
        if stage == 0:
            s = self.model.embedding(species)
            v = s.new_zeros((s.shape[0], 3, f))
        else:
            s = features[:, :f]
            v = features[:, f:].reshape(features.shape[0], 3, f)
        for k, (message, update) in enumerate(zip(self.model.messages, self.model.updates)):
            if k == stage:
                ds, dv = message(s, v, filters[k], directions, sender, receiver)
                s, v = s + ds, v + dv
                ds, dv = update(s, v)
                s, v = s + ds, v + dv
        energy = s.new_zeros(s.shape[0])
        if stage == self.num_stages - 1:
            energy = self.model.readout(s).squeeze(-1)
        return torch.cat([s, v.reshape(s.shape[0], 3 * f)], dim=1), energy


class NequIPSplit(_Split):
    """NequIP: stage k is interaction block k (the one-hot embedding in stage 0, the
    readout and per-species scale and shift in the last); features are the block's
    output irreps. The central atom of an edge is its sender (``center_index`` 0)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, len(model.layers), 0)
        self.num_species = int(model.num_species)
        self.use_dense = bool(model.use_dense)
        # TorchScript cannot call an Optional module: a list of zero or one
        self.scale_shifts = nn.ModuleList([] if model.scale_shift is None else [model.scale_shift])

    def forward(self, stage: int, features: torch.Tensor, species: torch.Tensor,
                atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                edge_vectors: torch.Tensor, num_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage (see the module docstring); as ``NequIP._features``, one block."""
        center, neighbor = edge_index[0], edge_index[1]
        lengths = torch.linalg.norm(edge_vectors, dim=-1)
        sh = self.model.spherical_harmonics(edge_vectors)
        basis = self.model.basis(lengths)
        envelope = self.model.envelope(lengths)
        attrs = nn.functional.one_hot(species, self.num_species).to(edge_vectors.dtype)
        num_nodes = species.shape[0]
        dense = False
        if self.use_dense:
            # one row per local atom: every central atom is one
            dense, slots, width = _plan_dense(center, num_local, num_local)
            if dense:
                sh = to_dense(sh * envelope.unsqueeze(-1), slots, num_local, width)
                basis = to_dense(basis, slots, num_local, width)
                neighbor = to_dense(neighbor, slots, num_local, width)
        x = self.model.embedding(attrs) if stage == 0 else features
        for k, layer in enumerate(self.model.layers):
            if k == stage:
                if dense:
                    # NequIPInteraction.forward, dense, with the atom-wise terms of the
                    # local atoms only (the ghosts' rows are their owners' business)
                    local = x[:num_local]
                    self_connection = layer.self_connection(local, attrs[:num_local])
                    h = layer.dense_tensor_product(layer.linear_in(x), neighbor, sh,
                                                   layer._dense_weights(basis))
                    h = layer.gate(layer.linear_out(h * layer.neighbor_norm) + self_connection)
                    if layer.has_residual:
                        h = h + local[:, layer.residual_start:layer.residual_stop]
                    x = torch.cat([h, h.new_zeros((num_nodes - num_local, h.shape[1]))])
                else:
                    x = layer(x, attrs, sh, basis, envelope, center, neighbor, False, False)
        energy = x.new_zeros(num_nodes)
        if stage == self.num_stages - 1:
            energy = self.model.readout(self.model.readout_hidden(x)).squeeze(-1)
            for scale_shift in self.scale_shifts:
                energy = scale_shift(energy, species)
        return x, energy


class MACESplit(_Split):
    """MACE: stage k is interaction and product k plus its readout (if the layer has
    one); features are the layer's hidden features, computed for the local atoms only
    (the ghost rows are zero)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, len(model.interactions), 1)
        self.num_species = int(model.num_species)
        self.use_dense = bool(model.use_dense)
        self.inv_neighbors = float(model.inv_neighbors)
        self.readout_layers: list[int] = [int(k) for k in model.readout_layers]
        # layers whose messages can be summed for the local atoms alone (the dense layout
        # then has a row per local atom, not per node): the residual kinds, whose
        # receiver-side terms are all returned for the caller to cut (the skip)
        self.local_rows: list[bool] = [
            isinstance(block, MACEInteraction) and block.residual and len(block.down) == 0
            for block in model.interactions]
        # the non-residual kind (MACE's first layer) applies its species skip after the
        # sum: in the dense layout its rows can be the local atoms' too, given their species
        self.local_after_sum: list[bool] = [
            isinstance(block, MACEInteraction) and not block.residual and len(block.down) == 0
            for block in model.interactions]

    def forward(self, stage: int, features: torch.Tensor, species: torch.Tensor,
                atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                edge_vectors: torch.Tensor, num_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage (see the module docstring); as ``MACE._layers``, one layer."""
        sender, receiver = edge_index[0], edge_index[1]
        lengths = torch.linalg.norm(edge_vectors, dim=-1)
        onehot = nn.functional.one_hot(species, self.num_species).to(lengths.dtype)
        edge_sh, edge_radial, edge_cutoff = self.model.edge_features(
            edge_vectors, lengths, atomic_numbers, sender, receiver)
        num_nodes = species.shape[0]
        edge_valid: Optional[torch.Tensor] = None  # noqa: UP045
        rows = num_nodes
        after_sum = False
        for k, local_rows in enumerate(self.local_rows):
            if k == stage and local_rows:
                rows = num_local  # every receiver is a local atom
            if k == stage and self.local_after_sum[k] and self.use_dense:
                rows = num_local
                after_sum = True
        if self.use_dense:
            dense, slots, width = _plan_dense(receiver, rows, num_local)
        else:
            dense, slots, width = False, receiver, 0
        if after_sum and not dense:
            rows = num_nodes  # the scatter sums have a row per node
        interaction_onehot = onehot[:num_local] if after_sum and dense else onehot
        if dense:
            sender, edge_sh, edge_radial, edge_cutoff, edge_valid = self.model.dense_edges(
                sender, edge_sh, edge_radial, edge_cutoff, lengths, slots, rows, width)
        h = self.model.embedding(onehot) if stage == 0 else features
        for k, (interaction, product) in enumerate(zip(self.model.interactions,
                                                       self.model.products)):
            if k == stage:
                a, skip = interaction(h, interaction_onehot, edge_sh, edge_radial, sender,
                                      receiver,
                                      self.inv_neighbors, dense, False, edge_cutoff, edge_valid)
                # the symmetric contraction and readout are per atom: local atoms only
                # (ghost rows are the owners' business), zero rows for the ghosts
                if skip is not None:
                    skip = skip[:num_local]
                h = product(a[:num_local], species[:num_local], skip)
        energy = h.new_zeros(num_nodes)
        for k, readout in enumerate(self.model.readouts):
            if self.readout_layers[k] == stage:
                energy = torch.cat([readout(h).squeeze(-1), h.new_zeros(num_nodes - num_local)])
        return torch.cat([h, h.new_zeros((num_nodes - num_local, h.shape[1]))]), energy


_SPLITS = {"SchNet": SchNetSplit, "PaiNN": PaiNNSplit, "NequIP": NequIPSplit,
           "MACE": MACESplit}


def split_architecture(model: nn.Module) -> Optional[_Split]:  # noqa: UP045
    """The stages of an architecture module, or None if it has no split (the plugin then
    keeps ghost atoms out to the whole receptive field)."""
    cls = _SPLITS.get(type(model).__name__)
    return None if cls is None else cls(model)


# --- a reference of the plugin's scheme, in Python --------------------------------------


def _domain_graph(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], owner: np.ndarray,
                  rank: int, cutoff: float, center_index: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (atom index of each: the rank's atoms first, then one node per periodic image
    of another atom within one cutoff of them) and edges of one rank's graph.

    Returns the atom of every node (M,), edge_index (2, E) over nodes, and edge vectors
    (E, 3). Every edge has a local atom as its central end (``center_index``).
    """
    from mlff.data.neighbors import neighbor_list

    edge_index, shifts = neighbor_list(positions, cell, np.asarray(pbc), cutoff)
    edge_index, shifts = np.asarray(edge_index), np.asarray(shifts, dtype=float)
    local = np.flatnonzero(owner == rank)
    node_of: dict[tuple[int, tuple[int, int, int]], int] = {}
    atoms: list[int] = []
    images: list[np.ndarray] = []
    for a in local:
        node_of[(int(a), (0, 0, 0))] = len(atoms)
        atoms.append(int(a))
        images.append(np.zeros(3))
    senders, receivers, vectors = [], [], []
    for e in range(edge_index.shape[1]):
        i, j = int(edge_index[0, e]), int(edge_index[1, e])
        shift = shifts[e]  # the neighbour j sits at positions[j] + shift @ cell
        center, other, image = (j, i, -shift) if center_index == 1 else (i, j, shift)
        if owner[center] != rank:
            continue
        key = (other, tuple(int(round(c)) for c in image))
        if key not in node_of:
            node_of[key] = len(atoms)
            atoms.append(other)
            images.append(image)
        a, b = node_of[(center, (0, 0, 0))], node_of[key]
        # the edge as the whole graph has it: sender i -> receiver j
        if center_index == 1:
            senders.append(b)
            receivers.append(a)
        else:
            senders.append(a)
            receivers.append(b)
        vectors.append(positions[j] + shift @ cell - positions[i])
    return (np.array(atoms), np.array([senders, receivers], dtype=np.int64).reshape(2, -1),
            np.array(vectors, dtype=float).reshape(-1, 3))


def run_partitioned(split: _Split, species: torch.Tensor, atomic_numbers: torch.Tensor,
                    positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool],
                    owner: np.ndarray, cutoff: float, dtype: torch.dtype = torch.float64,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energies, forces and virial of a structure whose atoms are divided among ranks.

    Each rank (``owner[i]``: the rank of atom i) evaluates ``split`` on its atoms and
    their images within one cutoff, stage by stage; between stages the ghost nodes take
    their owners' features (forward exchange), and in the backward pass the gradients
    with respect to ghost features are added to their owners' (reverse exchange), as
    ``pair_style mlff`` does between MPI ranks.

    Returns:
        per-atom energies (n,) in the architecture's units, forces (n, 3), and the virial
        ``-Σ r ⊗ dE/dr`` (3, 3), all float64.
    """
    n = len(positions)
    ranks = sorted(set(int(r) for r in owner))
    graphs = {}
    for rank in ranks:
        atoms, edge_index, vectors = _domain_graph(positions, cell, pbc, owner, rank, cutoff,
                                                   split.center_index)
        graphs[rank] = (torch.as_tensor(atoms), torch.as_tensor(edge_index),
                        torch.tensor(vectors, dtype=dtype).requires_grad_(True))
    stages = split.num_stages
    inputs: dict[tuple[int, int], torch.Tensor] = {}
    outputs: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    owned = torch.zeros((n, 0), dtype=dtype)  # features of every atom, from its owner
    energies = np.zeros(n)
    for stage in range(stages):
        next_owned = None
        for rank in ranks:
            atoms, edge_index, vectors = graphs[rank]
            nlocal = int((owner == rank).sum())
            features = owned[atoms].detach().requires_grad_(stage > 0)  # forward exchange
            out, energy = split(stage, features, species[atoms], atomic_numbers[atoms],
                                edge_index, vectors, nlocal)
            inputs[rank, stage], outputs[rank, stage] = features, (out, energy)
            energies[atoms[:nlocal].numpy()] += energy[:nlocal].detach().double().numpy()
            if next_owned is None:
                next_owned = out.new_zeros((n, out.shape[1])).detach()
            next_owned[atoms[:nlocal]] = out[:nlocal].detach()
        owned = next_owned
    # backward, stage by stage: each rank's gradients w.r.t. its ghosts go to the owners
    grad_owned = None
    edge_grads = {rank: torch.zeros_like(graphs[rank][2]) for rank in ranks}
    for stage in reversed(range(stages)):
        next_grad = torch.zeros((n, inputs[ranks[0], stage].shape[1]), dtype=dtype)
        for rank in ranks:
            atoms, _, vectors = graphs[rank]
            nlocal = int((owner == rank).sum())
            out, energy = outputs[rank, stage]
            objective = energy[:nlocal].sum()
            if grad_owned is not None:
                objective = objective + (out[:nlocal] * grad_owned[atoms[:nlocal]]).sum()
            wrt = [vectors] + ([inputs[rank, stage]] if stage > 0 else [])
            if not objective.requires_grad:
                continue
            grads = torch.autograd.grad([objective], wrt, allow_unused=True)
            if grads[0] is not None:
                edge_grads[rank] += grads[0]
            if stage > 0 and grads[1] is not None:
                next_grad.index_add_(0, atoms, grads[1])  # reverse exchange (and local rows)
        grad_owned = next_grad
    forces = np.zeros((n, 3))
    virial = np.zeros((3, 3))
    for rank in ranks:
        atoms, edge_index, vectors = graphs[rank]
        g = edge_grads[rank].double().numpy()
        sender, receiver = atoms[edge_index[0]].numpy(), atoms[edge_index[1]].numpy()
        np.add.at(forces, sender, g)
        np.add.at(forces, receiver, -g)
        virial -= vectors.detach().double().numpy().T @ g
    return energies, forces, virial
