"""Allegro (Musaelian et al., Nat. Commun. 2023): a strictly local equivariant model on e3nn.

Every directed edge ``ij`` (central atom ``i`` = the sender, ``edge_index[0]``; neighbour
``j``; ``r_ij = pos[j] - pos[i]``) carries

- scalar latents ``x_ij``: first ``MLP([onehot(Z_i), onehot(Z_j), Bessel(r_ij)]) * u(r_ij)``
  with the polynomial envelope ``u``;
- tensor features ``V_ij`` (``num_tensor_features`` channels of every irrep up to
  ``l_max``): first the spherical harmonics ``Y(r_ij)``, each channel weighted by a
  linear map of the latents.

Each layer builds the environment of every central atom,
``env_i = Σ_k w(x_ik) Y(r_ik) / sqrt(avg_num_neighbors)`` (channel weights from a linear map
of the latents), couples each ``V_ij`` with ``env_i`` in a channel-wise ("uuu") tensor
product, keeps the paths up to ``l_max``, and

- passes the even scalars of the product, with ``x_ij``, through an MLP; times ``u(r_ij)``
  it updates ``x_ij`` by a normalised residual ``(x + a·Δx) / sqrt(1 + a²)``, ``a``
  learnable per layer;
- mixes the product's channels and paths (one ``o3.Linear`` per irrep) into the new
  ``V_ij``, each channel weighted by a linear map of the new latents.

The channel weights are bias-free linear maps of ``x / sqrt(1 + mean(x²))``
(:func:`soft_normalize`): it vanishes with the latents at the cutoff, and it is bounded,
so that the tensor features do not grow with the latents from layer to layer (a plain
linear map makes them grow without bound at initialisation with three layers or more).

The last layer computes only the scalar paths (its tensor output would be unused, as in
Allegro). The edge energy is ``E_ij = MLP(x_ij) * u(r_ij)`` and the per-atom energy
``E_i = Σ_j E_ij / avg_num_neighbors``: the mean edge energy at the average coordination
(plain rather than square-root normalisation, since the edge energies of one atom are
correlated), so ``E_i`` stays of the size of one ``E_ij``.

Nothing is passed between atoms: ``E_i`` depends only on the atoms within one cutoff of
``i``. Everything that depends on an edge carries a factor ``u(r)`` of it, so the energy
changes smoothly (to second order) as a neighbour crosses the cutoff.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from e3nn import o3
from pydantic import Field
from torch import nn

from mlff.data import keys as K
from mlff.models.contract import (
    Architecture,
    ModelConfig,
    e3nn_conventions,
    radial_histogram,
    register,
)
from mlff.nn import MLP, BesselBasis, PolynomialCutoff, scatter_sum
from mlff.nn.equivariant import (
    PerSpeciesScaleShift,
    hidden_irreps,
    init_unit_variance,
    settle_codegen,
)
from mlff.nn.species import SpeciesIndex, rows

_EVEN_SCALAR = o3.Irrep("0e")


class ChannelWeighting(nn.Module):
    """Multiply every channel of every irrep by its own per-row weight.

    The input has irreps ``irreps`` in which every irrep has multiplicity ``channels`` or 1
    (then it is broadcast to ``channels``: the spherical harmonics). Weights are (E,
    channels * len(irreps)), channel-major. Done with precomputed gathers: one
    multiplication, no slices (whose gradients would each fill a full-size tensor).
    """

    def __init__(self, irreps: o3.Irreps, channels: int) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps)
        self.irreps_out = channel_irreps(channels, self.irreps_in)
        source, weight = [], []
        blocks = zip(self.irreps_in, self.irreps_in.slices(), strict=True)
        for k, ((mul, ir), part) in enumerate(blocks):
            if mul not in (1, channels):
                raise ValueError(f"{mul}x{ir}: multiplicity must be 1 or {channels}")
            for c in range(channels):
                for m in range(ir.dim):
                    source.append(part.start + (c if mul == channels else 0) * ir.dim + m)
                    weight.append(c * len(self.irreps_in) + k)
        self.broadcast = source != list(range(self.irreps_in.dim))
        # index buffers: they move with the module, are never cast, and are not saved
        self.register_buffer("source", torch.tensor(source, dtype=torch.int64), persistent=False)
        self.register_buffer(
            "weight_index", torch.tensor(weight, dtype=torch.int64), persistent=False
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weight x (E, irreps_in.dim) by (E, channels * len(irreps)) -> (E, irreps_out.dim)."""
        if self.broadcast:
            x = x.index_select(1, self.source)
        return x * weights.index_select(1, self.weight_index)


def soft_normalize(latents: torch.Tensor) -> torch.Tensor:
    """``x / sqrt(1 + mean(x²))`` per row.

    About ``x`` for small latents (so it vanishes with them at the cutoff, smoothly), of
    RMS below 1 for large ones. The channel weights are linear maps of it, which keeps the
    tensor features from growing with the latents from layer to layer.
    """
    return latents * torch.rsqrt(1.0 + latents.pow(2).mean(dim=-1, keepdim=True))


def channel_irreps(channels: int, irreps: o3.Irreps) -> o3.Irreps:
    """``irreps`` with every irrep taken ``channels`` times."""
    return o3.Irreps([(channels, ir) for _, ir in irreps])


class AllegroLayer(nn.Module):
    """One Allegro layer: environment sum, tensor product, latent and feature updates.

    The paths of the channel-wise ("uuu") tensor product are ordered by output irrep, so
    the paths that give the same irrep form one block of (paths x channels): the even
    scalars go to the latent MLP, and one ``o3.Linear`` per irrep mixes each block into
    the C channels of the new tensor features.

    Args:
        irreps_in: irreps of the incoming edge tensor features (C channels each).
        irreps_sh: irreps of the spherical harmonics.
        irreps_hidden: allowed irreps of the outgoing tensor features.
        channels: C.
        latent_dim: width of the scalar latents.
        latent_mlp_depth: linear layers of the latent MLP.
        last: compute the scalar paths only (no tensor output).
    """

    # a constant for TorchScript, which then compiles only the branch this layer takes
    __constants__ = ["last"]

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_hidden: o3.Irreps,
        channels: int,
        latent_dim: int,
        latent_mlp_depth: int,
        last: bool,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.env_weighting = ChannelWeighting(irreps_sh, channels)
        irreps_env = self.env_weighting.irreps_out
        self.env_weights = nn.Linear(latent_dim, channels * len(irreps_sh), bias=False)
        self.last = last
        allowed = {_EVEN_SCALAR} if last else {ir for _, ir in irreps_hidden}
        paths = sorted(
            (
                (ir_out, i, j)
                for i, (_, ir_in) in enumerate(self.irreps_in)
                for j, (_, ir_env) in enumerate(irreps_env)
                for ir_out in ir_in * ir_env
                if ir_out in allowed
            ),
            key=lambda path: (path[0] != _EVEN_SCALAR, path),  # by output irrep, 0e first
        )
        irreps_tp = o3.Irreps([(channels, ir_out) for ir_out, _, _ in paths])
        self.tensor_product = o3.TensorProduct(
            self.irreps_in, irreps_env, irreps_tp,
            [(i, j, k, "uuu", False) for k, (_, i, j) in enumerate(paths)],
        )
        self.irreps_tp = irreps_tp.simplify()  # one block per output irrep
        # 0e x 0e always gives the first block, the even scalars (not 0o, which sorts first)
        assert self.irreps_tp[0].ir == _EVEN_SCALAR
        self.num_scalars = self.irreps_tp[0].dim
        self.latent_mlp = MLP(
            [latent_dim + self.num_scalars] + [latent_dim] * latent_mlp_depth, act="silu"
        )
        self.update_logit = nn.Parameter(torch.zeros(()))  # a = exp(logit), starts at 1
        init_unit_variance(self.env_weights)
        init_unit_variance(self.latent_mlp)
        self.block_dims = [mul_ir.dim for mul_ir in self.irreps_tp]
        if last:
            self.irreps_out = o3.Irreps("")
        else:
            block_of = {ir: k for k, (_, ir) in enumerate(self.irreps_tp)}
            self.irreps_out = o3.Irreps(
                [(channels, ir) for _, ir in irreps_hidden if ir in block_of]
            )
            # one o3.Linear per output irrep, on its block of the product (the blocks come
            # from one split, whose gradient is one concatenation: no full-size zero fills)
            self.sources = [block_of[ir] for _, ir in self.irreps_out]
            self.linears = nn.ModuleList(
                o3.Linear(o3.Irreps([self.irreps_tp[k]]), o3.Irreps([(channels, ir)]))
                for k, (_, ir) in zip(self.sources, self.irreps_out, strict=True)
            )
            self.feature_weighting = ChannelWeighting(self.irreps_out, channels)
            self.feature_weights = nn.Linear(
                latent_dim, channels * len(self.irreps_out), bias=False
            )
            init_unit_variance(self.feature_weights)

    def forward(
        self,
        latents: torch.Tensor,
        features: torch.Tensor,
        sh: torch.Tensor,
        envelope: torch.Tensor,
        center: torch.Tensor,
        num_atoms: int,
        neighbor_norm: float,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP045 (TorchScript reads Optional)
        """Latents (E, latent_dim), features (E, irreps_in.dim) -> the updated ones."""
        env = self.env_weighting(sh, self.env_weights(soft_normalize(latents)))
        env = scatter_sum(env, center, num_atoms) * neighbor_norm
        blocks = self.tensor_product(features, env[center]).split(self.block_dims, dim=-1)
        scalars = blocks[0]
        update = self.latent_mlp(torch.cat([latents, scalars], dim=-1)) * envelope.unsqueeze(-1)
        a = self.update_logit.exp()
        latents = (latents + a * update) * torch.rsqrt(1.0 + a * a)
        if self.last:
            return latents, None
        weights = self.feature_weights(soft_normalize(latents))
        tensors = torch.cat(
            [linear(blocks[self.sources[k]]) for k, linear in enumerate(self.linears)], dim=-1
        )
        return latents, self.feature_weighting(tensors, weights)


@register("allegro")
class Allegro(Architecture):
    """Allegro mapped to per-atom energies (N,), in the units the Potential scales."""

    class Config(ModelConfig):
        """Allegro hyperparameters."""

        architecture: Literal["allegro"] = "allegro"
        num_layers: int = Field(2, ge=1, description="tensor-product layers")
        l_max: int = Field(
            1, ge=1, description="largest rotation order of the harmonics and tensor features"
        )
        parity: bool = Field(
            True, description="tensor features of both parities for every l (else (-1)^l only)"
        )
        num_tensor_features: int = Field(
            16, ge=1, description="channels of every irrep of the tensor features"
        )
        latent_dim: int = Field(
            64, ge=1, description="width of the scalar edge latents and their MLPs"
        )
        latent_mlp_depth: int = Field(2, ge=1, description="linear layers of each latent MLP")
        num_radial: int = Field(8, ge=1, description="Bessel radial basis functions")
        envelope_exponent: int = Field(6, ge=2, description="p of the polynomial cutoff")
        avg_num_neighbors: float | None = Field(
            None, gt=0, description="environment sums are divided by its square root, edge-energy "
            "sums by it; null: filled in from the training data by the trainer (1.0 if it reaches "
            "the model)"
        )
        per_species_scale_shift: bool = Field(
            True,
            description="learnable per-species scale (init 1) and shift (init 0) of the output",
        )

    # 2048 Cu atoms, float32, one thread: 1.11 s against 1.24 s of CPU per step, 0.6x the memory
    deploy_format = "aoti"
    presets = {
        "small": {"num_layers": 1, "l_max": 1, "num_tensor_features": 8, "latent_dim": 32},
        "medium": {"num_layers": 2, "l_max": 2, "num_tensor_features": 16, "latent_dim": 64},
        "large": {"num_layers": 3, "l_max": 2, "num_tensor_features": 32, "latent_dim": 128},
    }

    @classmethod
    def receptive_hops(cls, config: Config) -> int:
        """Strictly local: edge features of one central atom only, whatever the layers."""
        return 1

    @classmethod
    def conventions(cls) -> dict[str, str]:
        """e3nn's version and coupling convention."""
        return e3nn_conventions()

    def invariant_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Radial histograms per neighbour species (no per-atom feature vector exists
        before the edge-energy readout)."""
        return radial_histogram(inputs, self.config.cutoff, self.num_species)

    def species_parameters(self) -> dict[str, SpeciesIndex]:
        """The one-hot columns (central, then neighbour) of the first latent layer and the
        per-species scale/shift."""
        s = self.num_species
        first = self.two_body[0].weight
        central, neighbour = rows(first, s, axis=1), rows(first, s, axis=1, start=s)
        species = torch.where(central.species >= 0, central.species, neighbour.species)
        index = {"two_body.0.weight": SpeciesIndex(species, central.factor)}
        if self.scale_shift is not None:
            index["scale_shift.scales"] = rows(self.scale_shift.scales, s)
            index["scale_shift.shifts"] = rows(self.scale_shift.shifts, s)
        return index

    def __init__(self, config: Config, num_species: int) -> None:
        super().__init__()
        self.config = config
        self.num_species = num_species
        c = config.num_tensor_features
        self.channels = c
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.l_max)
        self.spherical_harmonics = o3.SphericalHarmonics(
            self.irreps_sh, normalize=True, normalization="component"
        )
        self.basis = BesselBasis(config.cutoff, config.num_radial)
        self.envelope = PolynomialCutoff(config.cutoff, config.envelope_exponent)
        latent = config.latent_dim
        self.two_body = MLP(
            [2 * num_species + config.num_radial] + [latent] * config.latent_mlp_depth, act="silu"
        )
        self.initial_weighting = ChannelWeighting(self.irreps_sh, c)
        self.initial_weights = nn.Linear(latent, c * len(self.irreps_sh), bias=False)
        init_unit_variance(self.two_body)
        with torch.no_grad():  # its inputs hold two ones (the one-hots) and a small basis
            first = self.two_body[0]
            first.weight.mul_(math.sqrt(first.in_features / 2.0))
        init_unit_variance(self.initial_weights)
        irreps_hidden = hidden_irreps(c, config.l_max, config.parity)
        irreps = self.initial_weighting.irreps_out
        layers = []
        for k in range(config.num_layers):
            layer = AllegroLayer(
                irreps, self.irreps_sh, irreps_hidden, c, latent, config.latent_mlp_depth,
                last=k == config.num_layers - 1,
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.edge_energy = MLP([latent, latent, 1], act="silu")
        avg = config.avg_num_neighbors if config.avg_num_neighbors is not None else 1.0
        self.neighbor_norm = 1.0 / math.sqrt(avg)  # of the environment sums
        self.energy_norm = 1.0 / avg  # of the edge-energy sums
        self.scale_shift = (
            PerSpeciesScaleShift(num_species) if config.per_species_scale_shift else None
        )
        settle_codegen(self)

    def _features(
        self, graph: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the layers.

        Returns the species, the central atom of every edge, the final latents, the
        envelope and the tensor features entering the last layer (their irreps are
        ``self.layers[-1].irreps_in``).
        """
        species = graph[K.SPECIES]
        center, neighbor = graph[K.EDGE_INDEX][0], graph[K.EDGE_INDEX][1]
        vectors = graph[K.EDGE_VECTORS]
        lengths = graph[K.EDGE_LENGTHS]
        num_atoms = species.shape[0]
        sh = self.spherical_harmonics(vectors)
        envelope = self.envelope(lengths)
        onehot = nn.functional.one_hot(species, self.num_species).to(vectors.dtype)
        inputs = torch.cat([onehot[center], onehot[neighbor], self.basis(lengths)], dim=-1)
        latents = self.two_body(inputs) * envelope.unsqueeze(-1)
        features = self.initial_weighting(sh, self.initial_weights(soft_normalize(latents)))
        last_features = features
        for layer in self.layers:
            last_features = features
            latents, new_features = layer(
                latents, features, sh, envelope, center, num_atoms, self.neighbor_norm
            )
            if new_features is not None:  # None after the last layer (scalars only)
                features = new_features
        return species, center, latents, envelope, last_features

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Graph dict -> (N,) per-atom energies."""
        species, center, latents, envelope, _ = self._features(graph)
        edge_energy = self.edge_energy(latents).squeeze(-1) * envelope
        out = scatter_sum(edge_energy, center, species.shape[0]) * self.energy_norm
        if self.scale_shift is not None:
            out = self.scale_shift(out, species)
        return out

    def equivariant_features(
        self, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, o3.Irreps]:
        """Return the last edge tensor features, (E, irreps.dim), and their irreps.

        These are the features entering the last layer, which computes scalars only.
        """
        features = self._features(inputs)[-1]
        return features, self.layers[-1].irreps_in
