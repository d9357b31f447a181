"""MACE (Batatia et al., NeurIPS 2022): higher-order equivariant message passing.

Each layer builds an atomic basis A from equivariant two-body messages (a tensor product
of the neighbours' features with the spherical harmonics of the edge, weighted by a radial
MLP), raises its body order by a symmetric contraction of A with itself up to
``correlation`` (ν = 3 gives four-body features from one layer), and mixes the result
into the atom's hidden features. Every layer has a readout; the atom's energy is the sum
of the readouts (linear for all layers but the last, a small MLP for the last).

Hidden features are ``num_channels x (0e + 1o + ... up to max_L)``; the last layer keeps
scalars only, as they alone feed the energy. Messages carry l up to ``max_ell``.

The options follow mace-torch's (same names where they exist), so that every MACE and
ScaleShiftMACE its ``mace_run_train`` builds has an exact counterpart here (see
:mod:`mlff.imports.mace`): the interaction blocks (``residual``: the skip connection
mixes the input features with the species, mace-torch's
RealAgnosticResidualInteractionBlock; ``plain``: the species mix the messages instead and
the layer has no skip, RealAgnosticInteractionBlock; ``density`` and
``density_residual``: the messages are divided by 1 + a learned smooth neighbour
density instead of ``avg_num_neighbors``; ``att_residual`` (layers after the first): the
radial MLP, 3 x 256 wide, also reads 64 learned scalars of the sending and the receiving
atom, and the skip connection is species-independent, RealAgnosticAttResidualInteractionBlock;
``nonlinear``: a radial MLP with layer norms that also reads species embeddings of both
atoms, a learned density normalisation and a gated nonlinearity on the messages,
RealAgnosticResidualNonLinearInteractionBlock), the irreps (any hidden irreps of equal
multiplicities, even-parity "SO(3)" harmonics, messages carrying their own
``edge_irreps``), the radial basis (Bessel, Gaussian,
Chebyshev), distance transforms (Agnesi, Soft), the cutoff applied to the radial basis or
to the radial MLP's output, a per-layer correlation order, and a linear or MLP last
readout with any of mace-torch's activations. ZBL repulsion is the ``zbl`` option every
architecture has (:mod:`mlff.nn.zbl`).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from pydantic import Field
from torch import nn

from mlff.data import keys as K
from mlff.models.contract import Architecture, ModelConfig, e3nn_conventions, register
from mlff.nn import BesselBasis, GaussianBasis, PolynomialCutoff, gather, scatter_sum
from mlff.nn.cueq import cueq_sum_for
from mlff.nn.cueq import wanted as cueq_wanted
from mlff.nn.dense import DenseUVUSum, plan_dense, to_dense
from mlff.nn.gate import Gate
from mlff.nn.mlp import folded_fully_connected, folded_scales, layer_norm_mlp
from mlff.nn.radial import AgnesiTransform, ChebyshevBasis, SoftTransform
from mlff.nn.species import SpeciesIndex, e3nn_weights, rows
from mlff.nn.symmetric_contraction import SymmetricContraction


def _irreps_up_to(l_max: int, multiplicity: int) -> o3.Irreps:
    """``multiplicity x (0e + 1o + 2e + ...)`` up to l_max: the parities of spherical harmonics."""
    return o3.Irreps([(multiplicity, (l, (-1) ** l)) for l in range(l_max + 1)])


def _message_product(irreps_edge: o3.Irreps, irreps_sh: o3.Irreps,
                     irreps_target: o3.Irreps) -> o3.TensorProduct:
    """The "uvu" product of the edge features with the harmonics, paths into ``irreps_target``."""
    paths, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_edge):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in irreps_target:
                    instructions.append((i, j, len(paths), "uvu", True))
                    paths.append((mul, ir_out))
    return o3.TensorProduct(irreps_edge, irreps_sh, o3.Irreps(paths), instructions,
                            shared_weights=False, internal_weights=False)


def _channel_blocks(irreps: o3.Irreps) -> list[tuple[int, int, int]]:
    """(start, stop, dimension of one copy) of every irrep block of ``irreps``."""
    return [(s.start, s.stop, ir.dim) for s, (_, ir) in zip(irreps.slices(), irreps)]


def _per_channel(
    features: torch.Tensor, channels: int, blocks: list[tuple[int, int, int]]
) -> torch.Tensor:
    """(N, irreps.dim) with equal multiplicities C -> (N, C, dim of one copy).

    ``blocks`` is :func:`_channel_blocks` of the irreps (plain ints, for TorchScript).
    """
    parts = [features[:, start:stop].reshape(-1, channels, dim) for start, stop, dim in blocks]
    return torch.cat(parts, dim=-1)


class _Abs(nn.Module):
    """``|x|``, elementwise (a readout activation of mace-torch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise."""
        return torch.abs(x)


class _LinearSkip(nn.Module):
    """A skip connection that ignores the species (the ``att_residual`` block's)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps) -> None:
        super().__init__()
        self.linear = o3.Linear(irreps_in, irreps_out)

    def forward(self, features: torch.Tensor, species_onehot: torch.Tensor) -> torch.Tensor:
        """(N, irreps_in.dim) -> (N, irreps_out.dim); ``species_onehot`` unused."""
        return self.linear(features)


class MACEInteraction(nn.Module):
    """Equivariant messages to the atomic basis A, shape (N, C · sh_irreps.dim).

    Args:
        irreps_node: the incoming hidden features' irreps.
        irreps_sh: spherical harmonics of the edges.
        irreps_target: A's irreps (``C x sh_irreps``).
        num_species: species count (for the species-dependent mixing).
        radial_sizes: widths of the radial MLP, input (basis size) first.
        irreps_hidden: irreps of the species-dependent skip connection of the input
            features, returned to be added after the product (``residual`` kinds).
        kind: ``residual``, ``plain``, ``density`` or ``density_residual`` (see the module).
        irreps_edge: the features the messages carry (``linear_up`` maps the node
            features to them); default: ``irreps_node``.
    """

    def __init__(self, irreps_node: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps,
                 num_species: int, radial_sizes: list[int], irreps_hidden: o3.Irreps,
                 kind: str = "residual",
                 irreps_edge: Optional[o3.Irreps] = None) -> None:  # noqa: UP045
        super().__init__()
        irreps_edge = irreps_node if irreps_edge is None else o3.Irreps(irreps_edge)
        species_irreps = o3.Irreps(f"{num_species}x0e")
        self.residual = kind in ("residual", "density_residual", "att_residual")
        self.use_density = kind in ("density", "density_residual")
        self.linear_up = o3.Linear(irreps_node, irreps_edge)
        # att_residual: the radial MLP also sees 64 scalars of both atoms' features
        self.down = nn.ModuleList()
        if kind == "att_residual":
            self.down.append(o3.Linear(irreps_node, o3.Irreps("64x0e")))
            radial_sizes = [radial_sizes[0] + 128, 256, 256, 256]
        self.conv = _message_product(irreps_edge, irreps_sh, irreps_target)
        # no biases: the weights vanish with the radial features at the cutoff
        self.radial = e3nn_nn.FullyConnectedNet([*radial_sizes, self.conv.weight_numel],
                                                nn.functional.silu)
        self.radial_scales = folded_scales(self.radial)
        self.dense_conv = DenseUVUSum(self.conv)
        self.weight_ranges = self.dense_conv.weight_ranges()
        self.linear = o3.Linear(self.conv.irreps_out, irreps_target)
        if kind == "att_residual":
            self.skip = _LinearSkip(irreps_node, irreps_hidden)
        elif self.residual:
            self.skip = o3.FullyConnectedTensorProduct(irreps_node, species_irreps, irreps_hidden)
        else:  # the species mix the messages; no skip connection
            self.skip = o3.FullyConnectedTensorProduct(irreps_target, species_irreps, irreps_target)
        # density kinds: one linear map of the radial features to a per-edge density weight
        self.density = nn.ModuleList()
        if self.use_density:
            self.density.append(e3nn_nn.FullyConnectedNet([radial_sizes[0], 1], nn.functional.silu))

    def forward(self, node_features: torch.Tensor, species_onehot: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor, sender: torch.Tensor,
                receiver: torch.Tensor, inv_neighbors: float,
                dense: bool = False, cueq: bool = False,
                edge_cutoff: Optional[torch.Tensor] = None,  # noqa: UP045 (TorchScript)
                edge_valid: Optional[torch.Tensor] = None,  # noqa: UP045
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP045
        """-> (A (N, irreps_target.dim), skip features (N, irreps_hidden.dim) or None).

        ``edge_valid``: unused here (see :class:`MACENonLinearInteraction`).
        Edge inputs are per edge ((E, ·) and sender (E,)), or with ``dense`` in the
        padded layout of :mod:`mlff.nn.dense` ((N, D, ·), sender (N, D); receiver unused).
        With ``cueq`` the neighbour sum runs on cuEquivariance (:mod:`mlff.nn.cueq`).
        ``edge_cutoff`` ((E,) or (N, D)): the envelope, when it multiplies the radial
        MLP's output rather than the radial basis.
        """
        skip: Optional[torch.Tensor] = None  # noqa: UP045
        if self.residual:
            skip = self.skip(node_features, species_onehot)
        h = self.linear_up(node_features)
        radial_input = edge_radial
        for down in self.down:
            scalars = down(node_features)
            if dense:
                receivers = scalars.unsqueeze(1).expand(-1, sender.shape[1], -1)
            else:
                receivers = gather(scalars, receiver)
            radial_input = torch.cat([edge_radial, gather(scalars, sender), receivers], dim=-1)
        if dense:
            radial_weights: list[torch.Tensor] = []
            for layer in self.radial:
                radial_weights.append(layer.weight)
            weights = folded_fully_connected(radial_input, radial_weights, self.radial_scales,
                                             self.weight_ranges)
            if edge_cutoff is not None:
                envelope = edge_cutoff.unsqueeze(-1)
                weights = [w * envelope for w in weights]
            summed = self.dense_conv(h, sender, edge_sh, weights)
        else:
            edge_weights = self.radial(radial_input)
            if edge_cutoff is not None:
                edge_weights = edge_weights * edge_cutoff.unsqueeze(-1)
            if cueq and not torch.jit.is_scripting():
                summed = self._cueq_sum(h, sender, receiver, edge_sh, edge_weights)
            else:
                messages = self.conv(gather(h, sender), edge_sh, edge_weights)
                summed = scatter_sum(messages, receiver, h.shape[0])
        inv = torch.full((1, 1), inv_neighbors, dtype=h.dtype, device=h.device)
        for density_fn in self.density:
            edge_density = torch.tanh(density_fn(edge_radial) ** 2).squeeze(-1)
            if edge_cutoff is not None:
                edge_density = edge_density * edge_cutoff
            if dense:
                density = edge_density.sum(dim=1)
            else:
                density = scatter_sum(edge_density, receiver, h.shape[0])
            inv = 1.0 / (density.unsqueeze(-1) + 1.0)
        a = self.linear(summed * inv)
        if not self.residual:
            a = self.skip(a, species_onehot)
        return a, skip


    @torch.jit.unused
    def _cueq_sum(self, h: torch.Tensor, sender: torch.Tensor, receiver: torch.Tensor,
                  edge_sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return cueq_sum_for(self, self.conv, h.device)(h, sender, receiver, edge_sh, weights)


class MACENonLinearInteraction(nn.Module):
    """The ``nonlinear`` block (mace-torch's RealAgnosticResidualNonLinearInteractionBlock).

    The radial MLP (Linear, LayerNorm, SiLU; with biases) reads the radial features and
    learned species embeddings of the sending and the receiving atom; the summed
    messages, mixed by a linear map, are divided by ``alpha + beta * density`` (a learned
    smooth neighbour density, as in the ``density`` kinds, from its own such MLP), added
    to a linear map of the up-projected node features, passed through a gated
    nonlinearity (:class:`mlff.nn.gate.Gate`) and mixed again. The skip connection is
    species-independent. Arguments as :class:`MACEInteraction`.
    """

    def __init__(self, irreps_node: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps,
                 num_species: int, radial_sizes: list[int], irreps_hidden: o3.Irreps,
                 irreps_edge: Optional[o3.Irreps] = None) -> None:  # noqa: UP045
        super().__init__()
        irreps_edge = irreps_node if irreps_edge is None else o3.Irreps(irreps_edge)
        species_irreps = o3.Irreps(f"{num_species}x0e")
        node_scalars = o3.Irreps(f"{o3.Irreps(irreps_node).count(o3.Irrep('0e'))}x0e")
        self.source_embedding = o3.Linear(species_irreps, node_scalars)
        self.target_embedding = o3.Linear(species_irreps, node_scalars)
        self.linear_up = o3.Linear(irreps_node, irreps_edge)
        self.conv = _message_product(irreps_edge, irreps_sh, irreps_target)
        self.dense_conv = DenseUVUSum(self.conv)
        self.weight_ranges = self.dense_conv.weight_ranges()
        edge_inputs = radial_sizes[0] + 2 * node_scalars.dim
        self.radial = layer_norm_mlp([edge_inputs, *radial_sizes[1:], self.conv.weight_numel])
        self.density = layer_norm_mlp([edge_inputs, 64, 1])
        self.skip = _LinearSkip(irreps_node, irreps_hidden)
        self.gate = Gate(irreps_target)
        self.linear_res = o3.Linear(irreps_edge, self.gate.irreps_in)
        self.linear_1 = o3.Linear(self.conv.irreps_out, self.gate.irreps_in)
        self.linear_2 = o3.Linear(irreps_target, irreps_target)
        self.alpha = nn.Parameter(torch.tensor(20.0))
        self.beta = nn.Parameter(torch.tensor(0.0))

    def forward(self, node_features: torch.Tensor, species_onehot: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor, sender: torch.Tensor,
                receiver: torch.Tensor, inv_neighbors: float,
                dense: bool = False, cueq: bool = False,
                edge_cutoff: Optional[torch.Tensor] = None,  # noqa: UP045 (TorchScript)
                edge_valid: Optional[torch.Tensor] = None,  # noqa: UP045
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP045
        """As :meth:`MACEInteraction.forward`; ``inv_neighbors`` and ``cueq`` unused.

        ``edge_valid`` ((N, D), dense layout only): 1 on real edges, 0 on empty slots,
        whose MLP outputs (the MLPs have biases) must not enter the density.
        """
        skip = self.skip(node_features, species_onehot)
        h = self.linear_up(node_features)
        residual = self.linear_res(h)
        targets = self.target_embedding(species_onehot)
        if dense:
            targets = targets.unsqueeze(1).expand(-1, sender.shape[1], -1)
        else:
            targets = gather(targets, receiver)
        sources = gather(self.source_embedding(species_onehot), sender)
        edge_inputs = torch.cat([edge_radial, sources, targets], dim=-1)
        weights = self.radial(edge_inputs)
        edge_density = torch.tanh(self.density(edge_inputs) ** 2).squeeze(-1)
        if edge_cutoff is not None:
            weights = weights * edge_cutoff.unsqueeze(-1)
            edge_density = edge_density * edge_cutoff
        if dense:
            if edge_valid is not None:
                edge_density = edge_density * edge_valid
            density = edge_density.sum(dim=1)
            # empty slots have zero harmonics: their weights do not matter
            summed = self.dense_conv(h, sender, edge_sh,
                                     [weights[..., a:b] for a, b in self.weight_ranges])
        else:
            density = scatter_sum(edge_density, receiver, h.shape[0])
            messages = self.conv(gather(h, sender), edge_sh, weights)
            summed = scatter_sum(messages, receiver, h.shape[0])
        message = self.linear_1(summed) / (density.unsqueeze(-1) * self.beta + self.alpha)
        return self.linear_2(self.gate(message + residual)), skip


class MACEProduct(nn.Module):
    """Symmetric contraction of A up to ``correlation``, then a linear map, plus the skip."""

    def __init__(self, irreps_channel: o3.Irreps, irreps_hidden: o3.Irreps, correlation: int,
                 num_species: int, num_channels: int) -> None:
        """``irreps_channel``: one channel of A (A is ``num_channels x irreps_channel``)."""
        super().__init__()
        per_channel_out = o3.Irreps([(1, ir) for _, ir in irreps_hidden])
        self.contraction = SymmetricContraction(irreps_channel, per_channel_out, correlation,
                                                num_species, num_channels)
        self.linear = o3.Linear(o3.Irreps([(num_channels, ir) for _, ir in irreps_hidden]),
                                irreps_hidden)
        self.num_channels = num_channels
        self.blocks_a = _channel_blocks(o3.Irreps([(num_channels, ir) for _, ir in irreps_channel]))

    def forward(self, a: torch.Tensor, species: torch.Tensor,
                skip: Optional[torch.Tensor]) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        """A (N, C x irreps_sh) -> hidden features (N, irreps_hidden.dim)."""
        a = _per_channel(a, self.num_channels, self.blocks_a)
        out = self.linear(self.contraction(a, species))
        if skip is not None:
            out = out + skip
        return out


@register("mace")
class MACE(Architecture):
    """MACE mapped to per-atom energies (N,), in the units the Potential scales."""

    # LAMMPS, 2048 Cu atoms, float32, one thread: the AOTI package with the dense sums,
    # max_L 1: 1.29 against 1.83 s of CPU per step, against TorchScript's (docs/benchmarks.md);
    # on several MPI ranks the plugin runs the TorchScript stages written beside it
    deploy_format = "aoti"

    class Config(ModelConfig):
        """MACE hyperparameters (names as in mace-torch where they exist)."""

        architecture: Literal["mace"] = "mace"
        num_channels: int = Field(32, ge=1, description="channels of every hidden irrep")
        max_L: int = Field(0, ge=0, description="highest l of the hidden features (0: scalars)")
        max_ell: int = Field(3, ge=0, description="highest l of the edge spherical harmonics")
        correlation: int | list[int] = Field(
            3, description="order of the symmetric contraction (one, or one per layer)")
        num_interactions: int = Field(2, ge=1, description="message-passing layers")
        num_radial: int = Field(8, ge=1, description="Bessel basis functions")
        envelope_exponent: int = Field(5, ge=2, description="p of the polynomial cutoff")
        radial_mlp: list[int] = Field([64, 64, 64], description="hidden widths of the radial MLP")
        readout_mlp: int = Field(
            16, ge=0, description="hidden width of the last readout's MLP; 0: a linear readout")
        readout_activation: Literal["silu", "tanh", "abs", "none"] = Field(
            "silu", description="activation of the last readout's MLP")
        readout_all_layers: bool = Field(
            True, description="every layer has a readout; false: the last layer's only")
        interaction: Literal["residual", "plain", "density", "density_residual",
                             "att_residual", "nonlinear"] = Field(
            "residual", description="interaction block of layers 2.. (see the module)")
        interaction_first: Literal["residual", "plain", "density", "density_residual",
                                   "nonlinear"] = Field(
            "residual", description="interaction block of the first layer")
        hidden_irreps: str | None = Field(
            None, description="hidden features of all layers but the last, e.g. '32x0e+32x1e' "
            "(multiplicities num_channels, 0e first); null: num_channels x (0e+1o+...) to max_L")
        use_so3: bool = Field(
            False, description="edge spherical harmonics of even parity only (0e+1e+2e+...)")
        edge_irreps: str | None = Field(
            None, description="irreps the messages carry in layers 2.. (null: the hidden ones)")
        edge_irreps_first: bool = Field(
            False, description="the first layer's messages carry edge_irreps' scalars")
        radial_basis: Literal["bessel", "gaussian", "chebyshev"] = Field(
            "bessel", description="radial basis of the edge lengths")
        distance_transform: Literal["none", "agnesi", "soft"] = Field(
            "none", description="transform of the lengths before the radial basis")
        apply_cutoff: bool = Field(
            True, description="envelope on the radial basis; false: on the radial MLP output")
        avg_num_neighbors: float | None = Field(
            None, gt=0, description="message normalisation; null = mean of the training data")

    presets = {
        "small": {"num_channels": 32, "max_L": 0, "correlation": 3, "num_interactions": 2},
        "medium": {"num_channels": 128, "max_L": 1, "correlation": 3, "num_interactions": 2},
        "large": {"num_channels": 128, "max_L": 2, "correlation": 3, "num_interactions": 2},
    }

    @classmethod
    def receptive_hops(cls, config: Config) -> int:
        """One hop per interaction."""
        return int(config.num_interactions)

    @classmethod
    def conventions(cls) -> dict[str, str]:
        """e3nn's version and coupling convention."""
        return e3nn_conventions()

    def invariant_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar (0e) channels (N, num_channels) of the first read-out layer's features."""
        features = self._layers(inputs)[self.readout_layers[0]][1]
        return features[:, : self.config.num_channels].detach()

    def species_parameters(self) -> dict[str, SpeciesIndex]:
        """The one-hot embedding, the species-dependent skips, the species embeddings of the
        non-linear blocks and the per-species weights of every symmetric contraction."""
        s = self.num_species
        index = {"embedding.weight": e3nn_weights(self.embedding, s)}
        for k, interaction in enumerate(self.interactions):
            if isinstance(interaction.skip, o3.TensorProduct):
                index[f"interactions.{k}.skip.weight"] = e3nn_weights(interaction.skip, s, operand=1)
            if isinstance(interaction, MACENonLinearInteraction):  # species embeddings
                for name in ("source_embedding", "target_embedding"):
                    index[f"interactions.{k}.{name}.weight"] = e3nn_weights(
                        getattr(interaction, name), s)
        for k, product in enumerate(self.products):
            for j, weight in enumerate(product.contraction.weights):
                index[f"products.{k}.contraction.weights.{j}"] = rows(weight, s)
        return index

    def __init__(self, config: Config, num_species: int) -> None:
        super().__init__()
        self.config = config
        c = config.num_channels
        self.num_species = num_species
        # neighbour sums as batched matrix products (mlff.nn.dense); False: the e3nn
        # tensor product and a scatter sum, the reference the fast path is tested against
        self.use_dense = True
        self.inv_neighbors = 1.0 / (config.avg_num_neighbors or 1.0)
        if config.use_so3:
            self.irreps_sh = o3.Irreps([(1, (l, 1)) for l in range(config.max_ell + 1)])
        else:
            self.irreps_sh = _irreps_up_to(config.max_ell, 1)
        hidden_irreps = _irreps_up_to(config.max_L, c)
        if config.hidden_irreps is not None:
            hidden_irreps = o3.Irreps(config.hidden_irreps)
            if {mul for mul, _ in hidden_irreps} != {c} or hidden_irreps[0].ir != o3.Irrep("0e"):
                raise ValueError(f"hidden_irreps {hidden_irreps}: every multiplicity must be "
                                 f"num_channels ({c}) and the first irrep 0e")
        # A's irreps (one channel): the harmonics; after the first layer both parities
        # of every l when the hidden features have odd scalars
        channel_first = self.irreps_sh
        channel = self.irreps_sh
        if hidden_irreps.count(o3.Irrep("0o")) > 0:
            channel = o3.Irreps([(1, (l, p)) for l in range(config.max_ell + 1) for p in (-1, 1)])
        edge_irreps = None if config.edge_irreps is None else o3.Irreps(config.edge_irreps)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True,
                                                         normalization="component")
        if config.radial_basis == "gaussian":
            self.radial_basis = GaussianBasis(config.cutoff, config.num_radial)
        elif config.radial_basis == "chebyshev":
            self.radial_basis = ChebyshevBasis(config.num_radial)
        else:
            self.radial_basis = BesselBasis(config.cutoff, config.num_radial)
        self.envelope = PolynomialCutoff(config.cutoff, config.envelope_exponent)
        self.apply_cutoff = config.apply_cutoff
        self.transforms = nn.ModuleList()  # 0 or 1 distance transform
        if config.distance_transform == "agnesi":
            self.transforms.append(AgnesiTransform())
        elif config.distance_transform == "soft":
            self.transforms.append(SoftTransform())
        correlations = config.correlation
        if isinstance(correlations, int):
            correlations = [correlations] * config.num_interactions
        if len(correlations) != config.num_interactions or min(correlations) < 1:
            raise ValueError(f"correlation {config.correlation}: one order >= 1, or one per "
                             f"layer ({config.num_interactions})")
        activations = {"silu": nn.SiLU, "tanh": nn.Tanh, "abs": _Abs, "none": nn.Identity}
        self.readout_layers: list[int] = []
        species_irreps = o3.Irreps(f"{num_species}x0e")
        self.embedding = o3.Linear(species_irreps, o3.Irreps(f"{c}x0e"))
        radial_sizes = [config.num_radial, *config.radial_mlp]
        self.interactions = nn.ModuleList()
        self.products = nn.ModuleList()
        self.readouts = nn.ModuleList()
        self.irreps_hidden: list[o3.Irreps] = []
        irreps_node = o3.Irreps(f"{c}x0e")
        self.needs_edge_valid = False
        self.irreps_a = o3.Irreps("0e")
        for layer in range(config.num_interactions):
            last = layer == config.num_interactions - 1
            hidden = o3.Irreps(f"{c}x0e") if last else hidden_irreps
            kind = config.interaction_first if layer == 0 else config.interaction
            one_channel = channel_first if layer == 0 else channel
            self.irreps_a = o3.Irreps([(c, ir) for _, ir in one_channel])
            irreps_edge = edge_irreps
            if layer == 0:
                irreps_edge = None
                if config.edge_irreps_first and edge_irreps is not None:
                    irreps_edge = o3.Irreps(f"{edge_irreps.count(o3.Irrep('0e'))}x0e")
            if kind == "nonlinear":
                self.needs_edge_valid = True
                self.interactions.append(MACENonLinearInteraction(
                    irreps_node, self.irreps_sh, self.irreps_a, num_species, radial_sizes,
                    hidden, irreps_edge))
            else:
                self.interactions.append(MACEInteraction(
                    irreps_node, self.irreps_sh, self.irreps_a, num_species, radial_sizes,
                    hidden, kind, irreps_edge))
            self.products.append(MACEProduct(one_channel, hidden, correlations[layer],
                                             num_species, c))
            if last and config.readout_mlp > 0:
                mlp = o3.Irreps(f"{config.readout_mlp}x0e")
                self.readouts.append(nn.Sequential(
                    o3.Linear(hidden, mlp), activations[config.readout_activation](),
                    o3.Linear(mlp, o3.Irreps("0e"))))
                self.readout_layers.append(layer)
            elif last or config.readout_all_layers:
                self.readouts.append(o3.Linear(hidden, o3.Irreps("0e")))
                self.readout_layers.append(layer)
            self.irreps_hidden.append(hidden)
            irreps_node = hidden

    @torch.jit.unused
    def _cueq_wanted(self, device: torch.device) -> bool:
        return cueq_wanted(device)

    def edge_features(
        self, edge_vectors: torch.Tensor, lengths: torch.Tensor, atomic_numbers: torch.Tensor,
        sender: torch.Tensor, receiver: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP045
        """Per-edge inputs of the interactions, from ``edge_vectors`` (E, 3) Å and their
        ``lengths`` (E,): spherical harmonics (E, sh), radial features (E, num_radial),
        times the envelope when ``apply_cutoff``, else the envelope (E,) separately."""
        edge_sh = self.spherical_harmonics(edge_vectors)
        basis_lengths = lengths
        for transform in self.transforms:
            basis_lengths = transform(lengths, atomic_numbers[sender], atomic_numbers[receiver])
        envelope = self.envelope(lengths)
        edge_radial = self.radial_basis(basis_lengths)
        edge_cutoff: Optional[torch.Tensor] = None  # noqa: UP045 (TorchScript)
        if self.apply_cutoff:
            edge_radial = edge_radial * envelope.unsqueeze(-1)
        else:
            edge_cutoff = envelope
        return edge_sh, edge_radial, edge_cutoff

    def dense_edges(
        self, sender: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor,
        edge_cutoff: Optional[torch.Tensor], lengths: torch.Tensor,  # noqa: UP045
        slots: torch.Tensor, rows: int, width: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor],  # noqa: UP045
               Optional[torch.Tensor]]:  # noqa: UP045
        """The edge inputs in the dense layout of :mod:`mlff.nn.dense` (``rows`` x
        ``width``, edges at ``slots``): sender, harmonics, radial features, envelope, and
        the mask of real edges (None unless an interaction needs it). Empty slots have
        sender 0 and zero features (they add nothing)."""
        edge_valid: Optional[torch.Tensor] = None  # noqa: UP045
        if edge_cutoff is not None:
            edge_cutoff = to_dense(edge_cutoff, slots, rows, width)
        if self.needs_edge_valid:
            edge_valid = to_dense(torch.ones_like(lengths), slots, rows, width)
        return (to_dense(sender, slots, rows, width), to_dense(edge_sh, slots, rows, width),
                to_dense(edge_radial, slots, rows, width), edge_cutoff, edge_valid)

    def _layers(self, graph: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(A, hidden features) of every layer."""
        sender, receiver = graph[K.EDGE_INDEX][0], graph[K.EDGE_INDEX][1]
        lengths = graph[K.EDGE_LENGTHS]
        species = graph[K.SPECIES]
        onehot = nn.functional.one_hot(species, self.num_species).to(lengths.dtype)
        edge_sh, edge_radial, edge_cutoff = self.edge_features(
            graph[K.EDGE_VECTORS], lengths, graph[K.ATOMIC_NUMBERS], sender, receiver)
        num_nodes = species.shape[0]
        edge_valid: Optional[torch.Tensor] = None  # noqa: UP045
        dense, cueq = False, False
        if not torch.jit.is_scripting():
            cueq = self.use_dense and self._cueq_wanted(species.device)
        if self.use_dense and not cueq:
            dense, slots, width = plan_dense(receiver, num_nodes, graph.get(K.DENSE_WIDTH))
            if dense:
                sender, edge_sh, edge_radial, edge_cutoff, edge_valid = self.dense_edges(
                    sender, edge_sh, edge_radial, edge_cutoff, lengths, slots, num_nodes, width)
        h = self.embedding(onehot)
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for interaction, product in zip(self.interactions, self.products):
            a, skip = interaction(h, onehot, edge_sh, edge_radial, sender, receiver,
                                  self.inv_neighbors, dense, cueq, edge_cutoff, edge_valid)
            h = product(a, species, skip)
            layers.append((a, h))
        return layers

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Graph dict -> (N,) per-atom energies: the sum of every layer's readout."""
        layers = self._layers(graph)
        energy: Optional[torch.Tensor] = None  # noqa: UP045 (TorchScript reads Optional)
        for k, readout in enumerate(self.readouts):
            term = readout(layers[self.readout_layers[k]][1]).squeeze(-1)
            if energy is None:
                energy = term
            else:
                energy = energy + term
        assert energy is not None  # num_interactions >= 1
        return energy

    def equivariant_features(self, graph: dict[str, torch.Tensor]) -> tuple[torch.Tensor, o3.Irreps]:
        """The last layer's atomic basis A: (N, irreps.dim), ``C x (0e+1o+...)`` up to max_ell."""
        return self._layers(graph)[-1][0], self.irreps_a
