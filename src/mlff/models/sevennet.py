"""SevenNet (Park et al., J. Chem. Theory Comput. 2024): NequIP-style message passing on e3nn.

This is the network of the SevenNet foundation models (SevenNet-0, SevenNet-MF-0,
SevenNet-l3i5), with the same e3nn modules in the same order, so that their weights run
here unchanged (``mlff import sevennet-0``); it trains from scratch like any other
architecture too. It differs from :mod:`mlff.models.nequip` in:

- the edge embedding: a Bessel basis ``(2/rc) sin(k_n r) / r`` with learnable
  frequencies ``k_n`` (initially ``n π / rc``), multiplied by the cutoff function
  *before* the radial MLP (an e3nn ``FullyConnectedNet`` without biases); the cutoff is
  the polynomial envelope or XPLOR switching (1 below ``cutoff_on``, then a smooth step to
  0 at the cutoff);
- the interaction block: ``sc = self_connection(x)`` (a linear map, or a tensor product
  with the one-hot species), ``x = linear_2(conv(linear_1(x)) / d) + sc``, then an
  equivariant gate (even scalars: SiLU, odd: tanh; gates likewise), with no other
  residual; ``d`` is the divisor of the neighbour sum (``sqrt(avg_num_neighbors)``
  unless ``conv_denominators`` lists one per layer);
- the node irreps of each layer may be given explicitly (``irreps``), as SevenNet-0 does
  (``128x0e+64x1e+32x2e``), and the last layer outputs even scalars only;
- multi-fidelity models (SevenNet-MF-0) append a one-hot of the fidelity ("modality")
  to the inputs of some linear layers; ``modality`` picks the fidelity this model
  evaluates;
- the per-atom output is ``scale[Z] · ε + shift[Z]`` (per species, inside the model);
- several readout heads may share the interaction layers (``heads``, multi-head
  fine-tuning): each head has its own two readout linears and per-species scale and
  shift; the first head's live under the single-head names (``readout_hidden``,
  ``readout``, ``scale_shift``), the others under ``extra_heads.<name>``. ``head`` picks
  the one evaluated; a graph dict with a ``head`` entry (:data:`mlff.data.keys.HEAD`, one
  head index per structure) evaluates each structure with its own head (training);
- per-element adapters (``adapters``, element-local fine-tuning): each block's output
  gains ``A[z](x)``, a linear map of the block's input chosen by the atom's species,
  for atoms of the listed species only (an e3nn tensor product of the input with the
  one-hot of those species, weights zero at the start). Atoms of other species get
  nothing added, so a structure without the listed species predicts exactly what the
  model without adapters does.

Conventions as everywhere in mlff (:mod:`mlff.data.keys`): edge ``(i, j)`` carries the
message of neighbour ``j`` to the central atom ``i`` along ``r_ij = pos[j] - pos[i]``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from pydantic import Field, model_validator
from torch import nn

from mlff.data import keys as K
from mlff.models.contract import (
    Architecture,
    ModelConfig,
    e3nn_conventions,
    hooked_features,
    register,
)
from mlff.nn import PolynomialCutoff, gather, scatter_sum
from mlff.nn.dense import DenseUVUSum, plan_dense, to_dense
from mlff.nn.equivariant import PerSpeciesScaleShift, settle_codegen
from mlff.nn.radial import XPLORCutoff
from mlff.nn.species import SpeciesIndex, e3nn_weights, rows

ModalInput = Literal["embedding", "linear_1", "linear_2", "readout"]


class TrainableBessel(nn.Module):
    """``(2 / rc) sin(k_n r) / r``, n = 1..num_basis, with learnable ``k_n = n π / rc`` (Å⁻¹).

    Args:
        cutoff: rc, Å.
        num_basis: number of functions.
    """

    def __init__(self, cutoff: float, num_basis: int) -> None:
        super().__init__()
        self.prefactor = 2.0 / cutoff
        self.frequencies = nn.Parameter(
            torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths, Å -> (E, num_basis)."""
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * r) / r


def product_irreps(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, l_max: int,
                   even_only: bool = False) -> o3.Irreps:
    """The irreps a full tensor product of ``irreps_in`` and ``irreps_sh`` reaches.

    Sorted and simplified (one entry per irrep, multiplicities summed over the paths),
    keeping ``l <= l_max`` (and even parity only with ``even_only``).
    """
    full = o3.FullTensorProduct(irreps_in, irreps_sh).irreps_out.simplify()
    return o3.Irreps([(mul, ir) for mul, ir in full
                      if ir.l <= l_max and not (even_only and ir.p == -1)])


def default_irreps(num_features: int, l_max: int, irreps_sh: o3.Irreps,
                   num_layers: int) -> list[o3.Irreps]:
    """Node irreps entering each layer and leaving the last (``num_layers + 1`` entries).

    ``num_features`` channels of every irrep with ``l <= l_max`` the tensor products reach;
    the last layer outputs ``num_features`` even scalars.
    """
    irreps = [o3.Irreps(f"{num_features}x0e")]
    for k in range(num_layers):
        last = k == num_layers - 1
        reached = product_irreps(irreps[-1], irreps_sh, 0 if last else l_max, even_only=last)
        irreps.append(o3.Irreps([(num_features, ir) for _, ir in reached]))
    return irreps


def with_modality(irreps: o3.Irreps, num_modalities: int, enabled: bool) -> o3.Irreps:
    """``irreps`` followed by ``num_modalities`` even scalars (the fidelity one-hot), if enabled."""
    if enabled and num_modalities > 0:
        return irreps + o3.Irreps(f"{num_modalities}x0e")
    return irreps


def equivariant_gate(irreps_out: o3.Irreps) -> Gate:
    """e3nn Gate whose output is ``irreps_out``: scalars activated, l > 0 gated by scalars.

    Even scalars and gates: SiLU; odd: tanh. The gates are even if ``irreps_out`` has even
    scalars, else odd.
    """
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gate_parity = 1 if o3.Irrep("0e") in scalars else -1
    gates = o3.Irreps([(mul, (0, gate_parity)) for mul, _ in gated])

    def act(parity: int):
        return nn.functional.silu if parity == 1 else torch.tanh

    return Gate(scalars, [act(ir.p) for _, ir in scalars], gates,
                [act(ir.p) for _, ir in gates], gated)


def convolution_instructions(irreps_in: o3.Irreps, irreps_sh: o3.Irreps,
                             irreps_target: o3.Irreps) -> tuple[list[tuple], o3.Irreps]:
    """"uvu" paths from every input irrep and harmonic to the irreps in ``irreps_target``.

    Returns the instructions, in loop order (input irrep, harmonic, output irrep; so the
    weights of one input irrep are adjacent), pointing into the sorted output irreps, and
    those sorted output irreps (one entry per path, multiplicity of its input).
    """
    targets = {ir for _, ir in irreps_target}
    mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in targets:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    mid_sorted, permutation, _ = o3.Irreps(mid).sort()
    return [(i, j, permutation[k], mode, w) for i, j, k, mode, w in instructions], mid_sorted


class SevenNetInteraction(nn.Module):
    """One SevenNet interaction block (see the module docstring).

    Args:
        irreps_in: irreps of the incoming node features.
        irreps_out: irreps of the block's output (after the gate).
        irreps_sh: irreps of the edge spherical harmonics.
        num_species: length of the one-hot species attributes.
        radial_sizes: widths of the radial MLP, input (number of basis functions) first,
            hidden layers after; the output width is the number of tensor-product weights.
        denominator: the neighbour sum is divided by it.
        self_connection: ``"linear"`` (a linear map of x) or ``"nequip"`` (a tensor product
            of x with the one-hot species).
        last: the last block (its convolution keeps even outputs only).
        num_modalities: length of the fidelity one-hot (0: single fidelity).
        modal_linear_1, modal_linear_2: whether the fidelity one-hot enters ``linear_1`` /
            ``linear_2``.
        adapted_species: species indices whose atoms get an adapter (zero at the start);
            none: no adapter.
    """

    # a TorchScript constant: the other branch of forward is not compiled (the two
    # self-connections take different arguments)
    __constants__ = ["self_connection_is_linear"]

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_species: int,
        radial_sizes: list[int],
        denominator: float,
        self_connection: str = "linear",
        last: bool = False,
        num_modalities: int = 0,
        modal_linear_1: bool = False,
        modal_linear_2: bool = False,
        adapted_species: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = equivariant_gate(o3.Irreps(irreps_out))
        self.irreps_out = self.gate.irreps_out
        gate_in = self.gate.irreps_in
        target = product_irreps(self.irreps_in, irreps_sh, self.irreps_out.lmax, even_only=last)
        instructions, irreps_mid = convolution_instructions(self.irreps_in, irreps_sh, target)
        if irreps_mid.simplify() != target:
            raise ValueError(f"convolution output {irreps_mid} does not reach {target}")
        self.modal_linear_1 = modal_linear_1 and num_modalities > 0
        self.modal_linear_2 = modal_linear_2 and num_modalities > 0

        self.self_connection_is_linear = self_connection == "linear"
        if self_connection == "linear":
            self.self_connection = o3.Linear(self.irreps_in, gate_in)
        elif self_connection == "nequip":
            self.self_connection = o3.FullyConnectedTensorProduct(
                self.irreps_in, o3.Irreps(f"{num_species}x0e"), gate_in
            )
        else:
            raise ValueError(f"unknown self-connection {self_connection!r}")
        self.linear_1 = o3.Linear(
            with_modality(self.irreps_in, num_modalities, self.modal_linear_1), self.irreps_in
        )
        self.tensor_product = o3.TensorProduct(
            self.irreps_in, irreps_sh, irreps_mid, instructions,
            shared_weights=False, internal_weights=False,
        )
        self.dense_tensor_product = DenseUVUSum(self.tensor_product)
        self.weight_sizes = [stop - start
                             for start, stop in self.dense_tensor_product.weight_ranges()]
        self.radial = FullyConnectedNet(
            [*radial_sizes, self.tensor_product.weight_numel], nn.functional.silu
        )
        self.linear_2 = o3.Linear(
            with_modality(target, num_modalities, self.modal_linear_2), gate_in
        )
        self.denominator = float(denominator)
        adapted = list(adapted_species or [])
        # not in the state dict: the model's hyperparameters (adapters) carry it
        self.register_buffer("adapted_species", torch.tensor(adapted, dtype=torch.long),
                             persistent=False)
        # empty without adapters, so models without them keep their state-dict keys
        self.adapters = nn.ModuleList()
        if adapted:
            adapter = o3.FullyConnectedTensorProduct(
                self.irreps_in, o3.Irreps(f"{len(adapted)}x0e"), self.irreps_out)
            with torch.no_grad():
                adapter.weight.zero_()
            self.adapters.append(adapter)

    def forward(
        self,
        x: torch.Tensor,
        attrs: torch.Tensor,
        modal: torch.Tensor,
        sh: torch.Tensor,
        embedding: torch.Tensor,
        center: torch.Tensor,
        neighbor: torch.Tensor,
        dense: bool = False,
    ) -> torch.Tensor:
        """Update node features x (N, irreps_in.dim) to (N, irreps_out.dim).

        Args:
            x: node features (N, irreps_in.dim).
            attrs: one-hot species (N, S).
            modal: the fidelity one-hot of every atom (N, M); (N, 0) when single-fidelity.
            sh: spherical harmonics of the edges (E, ·), or (N, D, ·) when ``dense``
                (zero in empty slots).
            embedding: cut-off radial basis (E, num_radial), or (N, D, num_radial).
            center: the central atom of every edge (E,); unused when ``dense``.
            neighbor: the neighbour of every edge (E,), or of every slot (N, D).
            dense: the edge inputs are in the padded layout of :mod:`mlff.nn.dense`.
        """
        if self.self_connection_is_linear:
            sc = self.self_connection(x)
        else:
            sc = self.self_connection(x, attrs)
        h = self.linear_1(torch.cat([x, modal], dim=-1) if self.modal_linear_1 else x)
        weights = self.radial(embedding)
        if dense:
            h = self.dense_tensor_product(
                h, neighbor, sh, list(torch.split(weights, self.weight_sizes, dim=-1))
            )
        else:
            messages = self.tensor_product(gather(h, neighbor), sh, weights)
            h = scatter_sum(messages, center, x.shape[0])
        h = h / self.denominator
        h = self.linear_2(torch.cat([h, modal], dim=-1) if self.modal_linear_2 else h)
        out = self.gate(h + sc)
        for adapter in self.adapters:
            # the one-hot of the adapted species: a zero row for every other atom
            out = out + adapter(x, attrs.index_select(1, self.adapted_species))
        return out


@register("sevennet")
class SevenNet(Architecture):
    """SevenNet mapped to per-atom energies (N,), eV (per-species scale and shift included)."""

    class Config(ModelConfig):
        """SevenNet hyperparameters."""

        architecture: Literal["sevennet"] = "sevennet"
        num_layers: int = Field(3, ge=1, description="interaction blocks")
        num_features: int = Field(
            32, ge=1, description="channels of every irrep of the hidden features "
            "(unused when irreps is given)"
        )
        l_max: int = Field(2, ge=0, description="largest rotation order of the edge harmonics "
                           "and (unless irreps is given) of the hidden features")
        parity: bool = Field(
            True, description="odd-parity harmonics ((-1)^l, true) or all even (false, as "
            "SevenNet-0); features of either parity follow"
        )
        irreps: list[str] | None = Field(
            None, description="node irreps entering each layer plus those leaving the last "
            "(num_layers + 1 e3nn strings, the last even scalars); null: num_features of "
            "every irrep up to l_max"
        )
        normalize_sh: bool = Field(
            True, description="harmonics of the unit edge vector (false: of the vector "
            "itself, as SevenNet-0 of 22May2024)"
        )
        num_radial: int = Field(8, ge=1, description="Bessel radial basis functions")
        cutoff_function: Literal["polynomial", "xplor"] = Field(
            "polynomial", description="polynomial envelope, or XPLOR switching from cutoff_on"
        )
        envelope_exponent: int = Field(6, ge=2, description="p of the polynomial envelope")
        cutoff_on: float = Field(
            4.5, gt=0, description="XPLOR: where switching starts, Å (< cutoff)"
        )
        radial_mlp: list[int] = Field(
            [64, 64], description="hidden widths of the radial MLPs (e3nn FullyConnectedNet)"
        )
        self_connection: Literal["linear", "nequip"] = Field(
            "linear", description="self-connection: linear map, or tensor product with species"
        )
        avg_num_neighbors: float | None = Field(
            None, gt=0, description="neighbour sums are divided by its square root; null: "
            "filled in from the training data by the trainer (1.0 if it reaches the model)"
        )
        conv_denominators: list[float] | None = Field(
            None, description="divisor of the neighbour sum of each layer (overrides "
            "avg_num_neighbors; set by imports)"
        )
        num_modalities: int = Field(
            0, ge=0, description="fidelities of a multi-fidelity model (0: single fidelity)"
        )
        modality: int = Field(0, ge=0, description="the fidelity this model evaluates")
        modal_inputs: list[ModalInput] = Field(
            [], description="linear layers whose input carries the fidelity one-hot: "
            "embedding, linear_1, linear_2, readout"
        )
        heads: list[str] = Field(
            [], description="names of the readout heads sharing the interaction layers "
            "(multi-head fine-tuning); empty: one unnamed head"
        )
        head: str | None = Field(
            None, description="the head this model evaluates (one of heads; null: the first)"
        )
        adapters: list[int] = Field(
            [], description="species indices (positions in the model's element list) whose "
            "atoms get per-element adapters in every block, zero at the start (element-local "
            "fine-tuning: finetune.adapters); empty: none"
        )

        @model_validator(mode="after")
        def _consistent(self):
            if self.irreps is not None and len(self.irreps) != self.num_layers + 1:
                raise ValueError(f"irreps needs num_layers + 1 = {self.num_layers + 1} entries, "
                                 f"got {len(self.irreps)}")
            denominators = self.conv_denominators
            if denominators is not None and len(denominators) != self.num_layers:
                raise ValueError(f"conv_denominators needs num_layers = {self.num_layers} entries")
            if self.cutoff_function == "xplor" and self.cutoff_on >= self.cutoff:
                raise ValueError(
                    f"cutoff_on ({self.cutoff_on}) must be below cutoff ({self.cutoff})"
                )
            if self.num_modalities and self.modality >= self.num_modalities:
                raise ValueError(f"modality {self.modality} of {self.num_modalities} fidelities")
            if len(set(self.heads)) != len(self.heads) or len(self.heads) == 1:
                raise ValueError(f"heads must be two or more distinct names, not {self.heads}")
            if self.head is not None and self.head not in self.heads:
                raise ValueError(f"head {self.head!r} is not one of heads {self.heads}")
            if len(set(self.adapters)) != len(self.adapters) or any(
                    s < 0 for s in self.adapters):
                raise ValueError(f"adapters must be distinct species indices, not {self.adapters}")
            return self

    # 2048 Cu atoms, float32, one thread (3 layers, 32 channels, l_max 1, even harmonics,
    # species tensor-product self-connection): 0.63 s against 0.83 s of CPU per step
    deploy_format = "aoti"
    presets = {
        "small": {"num_features": 32, "num_layers": 3, "l_max": 1},
        "medium": {"num_features": 64, "num_layers": 4, "l_max": 2},
        "large": {"num_features": 128, "num_layers": 5, "l_max": 3},
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
        """The hidden scalars of the readout (N, readout width)."""
        return hooked_features(self, inputs, "readout_hidden", use_input=False)

    def species_parameters(self) -> dict[str, SpeciesIndex]:
        """The one-hot embedding, the species-dependent self-connections and the
        per-species scale/shift."""
        s = self.num_species
        index = {"embedding.weight": e3nn_weights(self.embedding, s)}
        for k, interaction in enumerate(self.layers):
            if not interaction.self_connection_is_linear:
                index[f"layers.{k}.self_connection.weight"] = e3nn_weights(
                    interaction.self_connection, s, operand=1)
        index["scale_shift.scales"] = rows(self.scale_shift.scales, s)
        index["scale_shift.shifts"] = rows(self.scale_shift.shifts, s)
        for name, head in self.extra_heads.items():
            index[f"extra_heads.{name}.scale_shift.scales"] = rows(head.scale_shift.scales, s)
            index[f"extra_heads.{name}.scale_shift.shifts"] = rows(head.scale_shift.shifts, s)
        return index

    def __init__(self, config: Config, num_species: int) -> None:
        super().__init__()
        self.config = config
        self.num_species = num_species
        # neighbour sums as batched matrix products (mlff.nn.dense); False: e3nn's tensor
        # product and a scatter sum, the reference the fast path is tested against
        self.use_dense = True
        sh_parity = -1 if config.parity else 1
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.l_max, sh_parity)
        self.spherical_harmonics = o3.SphericalHarmonics(
            self.irreps_sh, normalize=config.normalize_sh, normalization="component",
            irreps_in=o3.Irreps(f"1x1{'o' if config.parity else 'e'}"),
        )
        self.basis = TrainableBessel(config.cutoff, config.num_radial)
        if config.cutoff_function == "xplor":
            self.envelope = XPLORCutoff(config.cutoff, config.cutoff_on)
        else:
            self.envelope = PolynomialCutoff(config.cutoff, config.envelope_exponent)
        if config.irreps is not None:
            irreps = [o3.Irreps(s) for s in config.irreps]
        else:
            irreps = default_irreps(config.num_features, config.l_max, self.irreps_sh,
                                    config.num_layers)
        if irreps[-1].lmax != 0 or any(ir.p == -1 for _, ir in irreps[-1]):
            raise ValueError(f"the last layer must output even scalars, not {irreps[-1]}")
        if config.conv_denominators is not None:
            denominators = list(config.conv_denominators)
        else:
            avg = config.avg_num_neighbors if config.avg_num_neighbors is not None else 1.0
            denominators = [math.sqrt(avg)] * config.num_layers
        if any(s >= num_species for s in config.adapters):
            raise ValueError(f"adapters {config.adapters} name species beyond the model's "
                             f"{num_species}")
        modal_inputs = set(config.modal_inputs)
        m = config.num_modalities
        self.num_modalities = m
        self.modality = config.modality
        self.modal_embedding = "embedding" in modal_inputs and m > 0
        self.modal_readout = "readout" in modal_inputs and m > 0

        self.embedding = o3.Linear(
            with_modality(o3.Irreps(f"{num_species}x0e"), m, self.modal_embedding), irreps[0]
        )
        self.layers = nn.ModuleList(
            SevenNetInteraction(
                irreps[k], irreps[k + 1], self.irreps_sh, num_species,
                [config.num_radial, *config.radial_mlp], denominators[k],
                config.self_connection, last=k == config.num_layers - 1,
                num_modalities=m, modal_linear_1="linear_1" in modal_inputs,
                modal_linear_2="linear_2" in modal_inputs,
                adapted_species=list(config.adapters),
            )
            for k in range(config.num_layers)
        )
        last = self.layers[-1].irreps_out
        hidden = o3.Irreps(f"{last.dim // 2}x0e")
        readout_in = with_modality(last, m, self.modal_readout)
        self.readout_hidden = o3.Linear(readout_in, hidden)
        self.readout = o3.Linear(hidden, o3.Irreps("1x0e"))
        self.scale_shift = PerSpeciesScaleShift(num_species)
        self.head_names: list[str] = list(config.heads)
        self.head_index = self.head_names.index(config.head) if config.head is not None else 0
        self.extra_heads = nn.ModuleDict({
            name: ReadoutHead(readout_in, hidden, num_species) for name in config.heads[1:]
        })
        settle_codegen(self)

    def _modal(self, reference: torch.Tensor) -> torch.Tensor:
        """The fidelity one-hot of every atom, (N, M) in reference's dtype ((N, 0) if none)."""
        modal = reference.new_zeros((reference.shape[0], self.num_modalities))
        if self.num_modalities > 0:
            modal[:, self.modality] = 1.0
        return modal

    def _features(self, graph: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The species (N,) and the features entering the readout (N, F)."""
        species = graph[K.SPECIES]
        center, neighbor = graph[K.EDGE_INDEX][0], graph[K.EDGE_INDEX][1]
        vectors = graph[K.EDGE_VECTORS]
        lengths = graph[K.EDGE_LENGTHS]
        sh = self.spherical_harmonics(vectors)
        embedding = self.basis(lengths) * self.envelope(lengths).unsqueeze(-1)
        attrs = nn.functional.one_hot(species, self.num_species).to(vectors.dtype)
        modal = self._modal(attrs)
        num_nodes = species.shape[0]
        dense = False
        if self.use_dense:
            dense, slots, width = plan_dense(center, num_nodes, graph.get(K.DENSE_WIDTH))
            if dense:
                # empty slots: zero harmonics, so they add nothing whatever their weights
                sh = to_dense(sh, slots, num_nodes, width)
                embedding = to_dense(embedding, slots, num_nodes, width)
                neighbor = to_dense(neighbor, slots, num_nodes, width)
        x = self.embedding(torch.cat([attrs, modal], dim=-1) if self.modal_embedding else attrs)
        for layer in self.layers:
            x = layer(x, attrs, modal, sh, embedding, center, neighbor, dense)
        if self.modal_readout:
            x = torch.cat([x, modal], dim=-1)
        return species, x

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Graph dict -> (N,) per-atom energies, eV, of the head ``head`` (or, with a
        ``head`` entry in ``graph``, (B,) int64, of each structure's own head)."""
        species, x = self._features(graph)
        if K.HEAD in graph:
            node_head = graph[K.HEAD][graph[K.BATCH]]
            out = self._first_head(x, species)
            k = 1
            for head in self.extra_heads.values():
                out = torch.where(node_head == k, head(x, species), out)
                k += 1
            return out
        if self.head_index == 0:
            return self._first_head(x, species)
        k = 1
        out = self._first_head(x, species)
        for head in self.extra_heads.values():
            if k == self.head_index:
                out = head(x, species)
            k += 1
        return out

    def _first_head(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        out = self.readout(self.readout_hidden(x)).squeeze(-1)
        return self.scale_shift(out, species)


class ReadoutHead(nn.Module):
    """A second (third, ...) readout of :class:`SevenNet`: the same two linears and
    per-species scale and shift as its first head, with weights of its own."""

    def __init__(self, irreps_in: o3.Irreps, hidden: o3.Irreps, num_species: int) -> None:
        super().__init__()
        self.readout_hidden = o3.Linear(irreps_in, hidden)
        self.readout = o3.Linear(hidden, o3.Irreps("1x0e"))
        self.scale_shift = PerSpeciesScaleShift(num_species)

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Readout features (N, F) and species (N,) -> per-atom energies (N,), eV."""
        out = self.readout(self.readout_hidden(x)).squeeze(-1)
        return self.scale_shift(out, species)
