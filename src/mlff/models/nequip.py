"""NequIP (Batzner et al., Nat. Commun. 2022): E(3)-equivariant message passing on e3nn.

Each atom carries features in a direct sum of irreducible representations of O(3)
(``num_features`` channels of every ``l <= l_max``; both parities with ``parity: true``,
only ``(-1)^l`` without). An interaction block mixes the features (``o3.Linear``),
couples each neighbour's features with the spherical harmonics of the edge in a
channel-wise ("uvu") tensor product whose per-edge weights come from an MLP of the edge
length, sums over the neighbours, mixes again, adds a self-connection (a tensor product of
the old features with the one-hot species) and applies an equivariant gate.

Conventions (see ``mlff.data.keys``): the central atom of edge ``(i, j)`` is the sender
``i`` (``edge_index[0]``); it receives the message of its neighbour ``j`` along
``r_ij = pos[j] - pos[i]``. The neighbour sum is divided by ``sqrt(avg_num_neighbors)``
(as in NequIP), which keeps the features O(1) for sums of ~avg_num_neighbors terms.

The radial MLP is an ``mlff.nn.MLP`` with biases; its output (the tensor-product weights)
is multiplied by the polynomial envelope, so every message vanishes smoothly (to second
order) at the cutoff.

The last interaction block computes only the even scalars, the only part of its output
the readout uses (NequIP computes the l > 0 outputs too and discards them): the energy
is the same function, it costs less, and no parameter is left without a gradient.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from e3nn import o3
from e3nn.nn import Gate
from pydantic import Field
from torch import nn

from mlff.data import keys as K
from mlff.models.contract import Architecture, ModelConfig, e3nn_conventions, register
from mlff.nn import MLP, BesselBasis, PolynomialCutoff, gather, scatter_sum
from mlff.nn.cueq import cueq_sum_for
from mlff.nn.cueq import wanted as cueq_wanted
from mlff.nn.dense import DenseUVUSum, plan_dense, to_dense
from mlff.nn.equivariant import (  # noqa: F401 (hidden_irreps: part of this module's API)
    PerSpeciesScaleShift,
    hidden_irreps,
    init_unit_variance,
    reachable,
    settle_codegen,
)
from mlff.nn.species import SpeciesIndex, e3nn_weights, rows

_EVEN_SCALAR = o3.Irrep("0e")


class NequIPInteraction(nn.Module):
    """One interaction block: convolution, self-connection, gate, residual.

    Args:
        irreps_in: irreps of the incoming node features.
        irreps_hidden: the hidden irreps; the block outputs those reachable from
            ``irreps_in`` through the edge's spherical harmonics.
        irreps_sh: irreps of the spherical harmonics.
        num_species: length of the one-hot species attributes.
        radial_sizes: hidden widths of the radial MLP (input: the radial basis).
        num_radial: number of radial basis functions.
        avg_num_neighbors: the neighbour sum is divided by its square root.
        scalars_only: output the even scalars only (the last block).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_hidden: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_species: int,
        radial_sizes: list[int],
        num_radial: int,
        avg_num_neighbors: float,
        scalars_only: bool = False,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        full_out = o3.Irreps(
            [(mul, ir) for mul, ir in irreps_hidden if reachable(self.irreps_in, irreps_sh, ir)]
        )
        # residual update when the block maps its irreps to themselves; the last block keeps
        # it on the even scalars it still computes
        residual = full_out == self.irreps_in
        target = full_out
        if scalars_only:
            target = o3.Irreps([(mul, ir) for mul, ir in full_out if ir == _EVEN_SCALAR])

        scalars = o3.Irreps([(mul, ir) for mul, ir in target if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in target if ir.l > 0])
        gates = o3.Irreps([(mul, "0e") for mul, _ in gated])
        self.gate = Gate(
            scalars,
            [nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
            gates,
            [torch.sigmoid] * len(gates),
            gated,
        )
        self.irreps_out = self.gate.irreps_out
        # the part of the input the output adds to: all of it, or its 0e block (last block);
        # kept as two ints (start, stop), which TorchScript can hold, unlike a slice
        part = self._residual_slice(target) if residual else None
        self.has_residual = part is not None
        self.residual_start = part.start if part is not None else 0
        self.residual_stop = part.stop if part is not None else 0

        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        # "uvu" paths from every input irrep and harmonic to the gate's input irreps
        gate_in = {ir for _, ir in self.gate.irreps_in}
        irreps_mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in gate_in:
                        instructions.append((i, j, len(irreps_mid), "uvu", True))
                        irreps_mid.append((mul, ir_out))
        irreps_mid = o3.Irreps(irreps_mid)
        irreps_mid_sorted, permutation, _ = irreps_mid.sort()
        instructions = [(i, j, permutation[k], *rest) for i, j, k, *rest in instructions]
        self.tensor_product = o3.TensorProduct(
            self.irreps_in,
            irreps_sh,
            irreps_mid_sorted,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.dense_tensor_product = DenseUVUSum(self.tensor_product)
        self.radial = MLP([num_radial, *radial_sizes, self.tensor_product.weight_numel], act="silu")
        self.weight_ranges = self.dense_tensor_product.weight_ranges()
        init_unit_variance(self.radial)
        self.linear_out = o3.Linear(irreps_mid_sorted.simplify(), self.gate.irreps_in)
        self.self_connection = o3.FullyConnectedTensorProduct(
            self.irreps_in, o3.Irreps(f"{num_species}x0e"), self.gate.irreps_in
        )
        self.neighbor_norm = 1.0 / math.sqrt(avg_num_neighbors)

    @torch.jit.unused
    def _cueq_sum(self, h: torch.Tensor, sender: torch.Tensor, receiver: torch.Tensor,
                  sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        product = cueq_sum_for(self, self.tensor_product, h.device)
        return product(h, sender, receiver, sh, weights)

    def _dense_weights(self, basis: torch.Tensor) -> list[torch.Tensor]:
        """The radial MLP's output, one tensor per input irrep of the dense product."""
        if torch.jit.is_scripting():  # TorchScript cannot take the MLP apart
            sizes = [stop - start for start, stop in self.weight_ranges]
            return list(torch.split(self.radial(basis), sizes, dim=-1))
        return self._dense_weights_by_parts(basis)

    @torch.jit.unused
    def _dense_weights_by_parts(self, basis: torch.Tensor) -> list[torch.Tensor]:
        # one matrix product per part: slices of one large output would each need a
        # full-size zero gradient buffer in the backward pass
        *layers, last = list(self.radial)
        hidden = basis
        for layer in layers:
            hidden = layer(hidden)
        return [nn.functional.linear(hidden, last.weight[start:stop], last.bias[start:stop])
                for start, stop in self.weight_ranges]

    def _residual_slice(self, target: o3.Irreps) -> slice:
        if target == self.irreps_in:
            return slice(0, self.irreps_in.dim)
        # scalars only: the input's 0e block, the same width as the output
        start = 0
        for mul, ir in self.irreps_in:
            if ir == _EVEN_SCALAR and mul == target.dim:
                return slice(start, start + mul)
            start += mul * ir.dim
        raise ValueError(f"no residual from {self.irreps_in} to {target}")

    def forward(
        self,
        x: torch.Tensor,
        attrs: torch.Tensor,
        sh: torch.Tensor,
        basis: torch.Tensor,
        envelope: torch.Tensor,
        center: torch.Tensor,
        neighbor: torch.Tensor,
        dense: bool = False,
        cueq: bool = False,
    ) -> torch.Tensor:
        """Update the node features x (N, irreps_in.dim) to (N, irreps_out.dim).

        The other inputs: one-hot species (N, S), the edges' spherical harmonics (E, ·),
        radial basis (E, num_radial) and envelope (E,), the central atom and neighbour of
        every edge. With ``dense``, the edge inputs are in the padded layout of
        :mod:`mlff.nn.dense` (harmonics (N, D, ·) already multiplied by the envelope,
        basis (N, D, num_radial), neighbour (N, D); envelope and center unused).
        With ``cueq`` the neighbour sum runs on cuEquivariance (:mod:`mlff.nn.cueq`).
        """
        self_connection = self.self_connection(x, attrs)
        h = self.linear_in(x)
        if dense:
            # the product is linear in the harmonics: the envelope scales them (4 numbers
            # per edge) instead of the weights (weight_numel per edge)
            h = self.dense_tensor_product(h, neighbor, sh, self._dense_weights(basis))
        elif cueq and not torch.jit.is_scripting():
            h = self._cueq_sum(h, neighbor, center, sh * envelope.unsqueeze(-1), self.radial(basis))
        else:
            weights = self.radial(basis) * envelope.unsqueeze(-1)
            messages = self.tensor_product(gather(h, neighbor), sh, weights)
            h = scatter_sum(messages, center, x.shape[0])
        h = h * self.neighbor_norm
        h = self.gate(self.linear_out(h) + self_connection)
        if self.has_residual:
            h = h + x[:, self.residual_start : self.residual_stop]
        return h


@register("nequip")
class NequIP(Architecture):
    """NequIP mapped to per-atom energies (N,), in the units the Potential scales."""

    # LAMMPS, 2048 Cu atoms, float32, one thread: the AOTI package with the dense sums,
    # 0.59 against 0.73 s of CPU per step, against TorchScript's (docs/benchmarks.md);
    # on several MPI ranks the plugin runs the TorchScript stages written beside it
    deploy_format = "aoti"

    class Config(ModelConfig):
        """NequIP hyperparameters."""

        architecture: Literal["nequip"] = "nequip"
        num_features: int = Field(
            32, ge=1, description="channels of every irrep of the hidden features"
        )
        num_layers: int = Field(3, ge=1, description="interaction blocks")
        l_max: int = Field(
            1, ge=0, description="largest rotation order of the features and harmonics"
        )
        parity: bool = Field(
            True, description="hidden features of both parities for every l (else (-1)^l only)"
        )
        num_radial: int = Field(8, ge=1, description="Bessel radial basis functions")
        envelope_exponent: int = Field(6, ge=2, description="p of the polynomial cutoff")
        radial_mlp_width: int = Field(64, ge=1, description="hidden width of the radial MLPs")
        radial_mlp_depth: int = Field(2, ge=0, description="hidden layers of the radial MLPs")
        avg_num_neighbors: float | None = Field(
            None, gt=0, description="neighbour sums are divided by its square root; "
            "null: filled in from the training data by the trainer (1.0 if it reaches the model)"
        )
        per_species_scale_shift: bool = Field(
            True,
            description="learnable per-species scale (init 1) and shift (init 0) of the output",
        )

    presets = {
        "small": {"num_features": 16, "num_layers": 3, "l_max": 1},
        "medium": {"num_features": 32, "num_layers": 4, "l_max": 2},
        "large": {"num_features": 64, "num_layers": 5, "l_max": 2},
    }

    @classmethod
    def receptive_hops(cls, config: Config) -> int:
        """One hop per interaction block."""
        return int(config.num_layers)

    @classmethod
    def conventions(cls) -> dict[str, str]:
        """e3nn's version and coupling convention."""
        return e3nn_conventions()

    def invariant_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The hidden scalars of the readout (N, readout width), from the last layer's scalars."""
        return self.readout_hidden(self._features(inputs)[1]).detach()

    def species_parameters(self) -> dict[str, SpeciesIndex]:
        """The one-hot embedding, every self-connection and the per-species scale/shift."""
        s = self.num_species
        index = {"embedding.weight": e3nn_weights(self.embedding, s)}
        for k, interaction in enumerate(self.layers):
            index[f"layers.{k}.self_connection.weight"] = e3nn_weights(
                interaction.self_connection, s, operand=1)
        if self.scale_shift is not None:
            index["scale_shift.scales"] = rows(self.scale_shift.scales, s)
            index["scale_shift.shifts"] = rows(self.scale_shift.shifts, s)
        return index

    def __init__(self, config: Config, num_species: int) -> None:
        super().__init__()
        self.config = config
        self.num_species = num_species
        # neighbour sums as batched matrix products (mlff.nn.dense); False: the e3nn
        # tensor product and a scatter sum, the reference the fast path is tested against
        self.use_dense = True
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.l_max)
        self.spherical_harmonics = o3.SphericalHarmonics(
            self.irreps_sh, normalize=True, normalization="component"
        )
        self.basis = BesselBasis(config.cutoff, config.num_radial)
        self.envelope = PolynomialCutoff(config.cutoff, config.envelope_exponent)
        f = config.num_features
        self.embedding = o3.Linear(o3.Irreps(f"{num_species}x0e"), o3.Irreps(f"{f}x0e"))
        irreps_hidden = hidden_irreps(f, config.l_max, config.parity)
        avg = config.avg_num_neighbors if config.avg_num_neighbors is not None else 1.0
        irreps = self.embedding.irreps_out
        layers = []
        for k in range(config.num_layers):
            layer = NequIPInteraction(
                irreps, irreps_hidden, self.irreps_sh, num_species,
                [config.radial_mlp_width] * config.radial_mlp_depth, config.num_radial, avg,
                scalars_only=k == config.num_layers - 1,
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        hidden = max(f // 2, 1)
        self.readout_hidden = o3.Linear(irreps, o3.Irreps(f"{hidden}x0e"))
        self.readout = o3.Linear(o3.Irreps(f"{hidden}x0e"), o3.Irreps("1x0e"))
        self.scale_shift = (
            PerSpeciesScaleShift(num_species) if config.per_species_scale_shift else None
        )
        settle_codegen(self)

    @torch.jit.unused
    def _cueq_wanted(self, device: torch.device) -> bool:
        return cueq_wanted(device)

    def _features(
        self, graph: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the interaction blocks.

        Returns the species, the last block's output and the features entering the last
        block (their irreps are ``self.layers[-1].irreps_in``).
        """
        species = graph[K.SPECIES]
        center, neighbor = graph[K.EDGE_INDEX][0], graph[K.EDGE_INDEX][1]
        vectors = graph[K.EDGE_VECTORS]
        lengths = graph[K.EDGE_LENGTHS]
        sh = self.spherical_harmonics(vectors)
        basis = self.basis(lengths)
        envelope = self.envelope(lengths)
        attrs = nn.functional.one_hot(species, self.num_species).to(vectors.dtype)
        num_nodes = species.shape[0]
        dense, cueq = False, False
        if not torch.jit.is_scripting():
            cueq = self.use_dense and self._cueq_wanted(species.device)
        if self.use_dense and not cueq:
            dense, slots, width = plan_dense(center, num_nodes, graph.get(K.DENSE_WIDTH))
            if dense:
                # empty slots: zero harmonics, so they add nothing whatever their weights
                sh = to_dense(sh * envelope.unsqueeze(-1), slots, num_nodes, width)
                basis = to_dense(basis, slots, num_nodes, width)
                neighbor = to_dense(neighbor, slots, num_nodes, width)
        x = self.embedding(attrs)
        previous = x
        for layer in self.layers:
            previous = x
            x = layer(x, attrs, sh, basis, envelope, center, neighbor, dense, cueq)
        return species, x, previous

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Graph dict -> (N,) per-atom energies."""
        species, x, _ = self._features(graph)
        out = self.readout(self.readout_hidden(x)).squeeze(-1)
        if self.scale_shift is not None:
            out = self.scale_shift(out, species)
        return out

    def equivariant_features(
        self, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, o3.Irreps]:
        """Return the last node features that carry l > 0, (N, irreps.dim), and their irreps.

        These are the features entering the last interaction block, which computes
        scalars only.
        """
        _, _, features = self._features(inputs)
        return features, self.layers[-1].irreps_in
