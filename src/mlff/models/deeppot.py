"""DeepPot-SE (Zhang et al., NeurIPS 2018), DeePMD-kit's ``se_e2_a`` descriptor + energy fit.

For every edge i→j (i the central atom, r_ij = r_j - r_i, r = |r_ij|):

* the smooth inverse distance ``s(r) = 1/r`` for r < ``rcut_smth``, switched to zero at
  the cutoff by DeePMD's quintic ``s = (1/r)(u³(-6u² + 15u - 10) + 1)``,
  ``u = (r - rcut_smth)/(cutoff - rcut_smth)``: zero with vanishing first and second
  derivatives at the cutoff;
* the environment row ``R_ij = s(r) (1, x/r, y/r, z/r)``, normalised by per-species
  statistics of the central atom (DeePMD's ``davg``/``dstd``, buffers ``env_mean`` and
  ``env_std``; see :meth:`DeepPot.fit_statistics`);
* the embedding ``G_ij = N_{t_i t_j}(ŝ_ij)`` (M1 = ``embedding_neurons[-1]`` values) of
  the normalised ``ŝ = (s - mean)/std``, one net per species pair (per neighbour species
  with ``type_one_side``), with DeePMD's residual doubling (a layer twice as wide as its
  input adds ``[x, x]``).

Then ``T_i = Σ_j R̂_ijᵀ G_ij / (4 avg_num_neighbors)`` (4, M1; DeePMD divides by its
``sel``, the largest neighbour count, typically a few times the mean), the descriptor
``D_i = T_iᵀ T_i<`` (M1·M2 numbers, T_i< the first M2 = ``axis_neurons`` columns), and a
fitting net per central species gives the per-atom energy.

Differences from DeePMD-kit besides the normalisation below: the first embedding layer
starts with weights of std 2 (DeePMD: 1/sqrt(1 + width)), the fitting nets' residual
layers have no "timestep" scale, and the statistics are set by the first training batch
when :meth:`DeepPot.fit_statistics` was not called (DeePMD uses its first batches too).

Normalisation with a graph instead of DeePMD's fixed neighbour slots: DeePMD normalises
``(R - davg)/dstd`` and fills empty slots with ``-davg/dstd``, so an atom leaving the
cutoff turns smoothly into an empty slot. Here there are no slots; each edge contributes
``(R - davg)/dstd - (-davg/dstd) = R/dstd`` (its difference from an empty slot), which
vanishes at the cutoff. The embedding input keeps DeePMD's ``(s - davg)/dstd``. The
energy is therefore smooth at the cutoff, and DeePMD's constant empty-slot term (which
depends on its ``sel``) is absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Optional

import torch
from pydantic import Field, model_validator
from torch import nn

from mlff.data import keys as K
from mlff.data.edges import edge_vectors
from mlff.models.contract import (
    Architecture,
    Grown,
    ModelConfig,
    build_architecture,
    radial_histogram,
    register,
)
from mlff.nn import activation, scatter_sum
from mlff.nn.species import SpeciesIndex, carry, per_species, rows

_MIN_STD = 1e-2  # DeePMD's protection: a (nearly) constant column is not blown up
# DeePMD divides the neighbour sum by sel, the largest neighbour count it allows, typically
# a few times the mean; dividing by this factor times avg_num_neighbors keeps the
# descriptor (quadratic in T) at that small scale, where the tanh fitting nets, initialised
# as in DeePMD, do not saturate. On ethanol, after 8 epochs: force MAE 178 meV/Å with a
# factor of 1, 109-118 with factors of 2 to 8
_SEL_FACTOR = 4.0
# std of the first embedding layer's weights: its input ŝ has unit variance after the
# statistics, and sharper initial features than with DeePMD's 1/sqrt(1 + width) ≈ 0.2
# about halve the force error after 8 epochs on ethanol (99 instead of 207 meV/Å)
_EMBEDDING_INPUT_STD = 2.0


def smooth_inverse_distance(r: torch.Tensor, rcut_smth: float, cutoff: float) -> torch.Tensor:
    """DeePMD's switched 1/r: ``1/r`` below ``rcut_smth``, 0 from ``cutoff`` on (C² at both)."""
    u = ((r - rcut_smth) / (cutoff - rcut_smth)).clamp(0.0, 1.0)
    switch = u**3 * (-6.0 * u**2 + 15.0 * u - 10.0) + 1.0
    return switch / r


def _deepmd_init(layer: nn.Linear, bias_std: float = 1.0) -> None:
    """DeePMD's initialisation: weights N(0, 1/sqrt(in + out)), biases N(0, bias_std)."""
    fan_in, fan_out = layer.in_features, layer.out_features
    nn.init.normal_(layer.weight, std=(fan_in + fan_out) ** -0.5)
    if layer.bias is not None:
        if bias_std > 0:
            nn.init.normal_(layer.bias, std=bias_std)
        else:
            nn.init.zeros_(layer.bias)


class ResidualMLP(nn.Module):
    """DeePMD's embedding/fitting net: ``y = act(W x + b)``, then ``x + y`` when the widths
    match, ``[x, x] + y`` when the layer doubles the width, else ``y``.

    Args:
        sizes: widths, input first.
        act: activation name.
        final_linear: add a last linear layer to 1 output (the fitting net's energy).
    """

    def __init__(self, sizes: Sequence[int], act: str, final_linear: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            _deepmd_init(layer)
        self.act = activation(act)
        self.out = None
        if final_linear:
            self.out = nn.Linear(sizes[-1], 1)
            _deepmd_init(self.out, bias_std=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, sizes[0]) -> (n, sizes[-1]), or (n,) with ``final_linear``."""
        for layer in self.layers:
            y = self.act(layer(x))
            if layer.out_features == layer.in_features:
                x = x + y
            elif layer.out_features == 2 * layer.in_features:
                x = torch.cat([x, x], dim=-1) + y
            else:
                x = y
        if self.out is not None:
            return self.out(x).squeeze(-1)
        return x


def group_rows(group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, list[int]]:
    """The stable order that sorts rows by ``group``, and the size of every group.

    With :func:`ungroup_rows`, applies one net per group with one call per net: rows are
    sorted by group once, split into contiguous chunks, and put back in order. Every net
    runs, on an empty chunk too, so all parameters get (zero) gradients.
    """
    order = torch.argsort(group, stable=True)
    counts: list[int] = torch.bincount(group, minlength=num_groups).tolist()
    return order, counts


def apply_by_group(nets: nn.ModuleList, x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Row k is ``nets[group[k]](x[k])``, with every net on every row and each row's own
    net's output selected: no size depends on the data, as ``torch.export`` needs (the
    counts of :func:`group_rows`, and the rows found by ``nonzero``, whose sizes are
    known only at run time, gave compiled packages that failed on larger systems). It
    costs one net evaluation per row and net instead of one per row.
    """
    out: Optional[torch.Tensor] = None  # noqa: UP045 (TorchScript)
    for k, net in enumerate(nets):
        y = net(x)
        mask = (group == k).reshape((-1,) + (1,) * (y.dim() - 1))
        out = torch.where(mask, y, torch.zeros_like(y) if out is None else out)
    assert out is not None  # at least one net
    return out


def ungroup_rows(out_sorted: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Put rows computed in the order of :func:`group_rows` back in their original order."""
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return out_sorted[inverse]


@register("deeppot")
class DeepPot(Architecture):
    """DeepPot-SE (se_e2_a) mapped to per-atom energies (N,), in the units the Potential scales."""


    class Config(ModelConfig):
        """DeepPot-SE hyperparameters (DeePMD-kit's se_e2_a descriptor with an energy fit)."""

        architecture: Literal["deeppot"] = "deeppot"
        cutoff: float = Field(6.0, gt=0, description="interaction cutoff (DeePMD's rcut), Å")
        rcut_smth: float = Field(
            0.5, ge=0, description="where 1/r starts to be switched off towards the cutoff, Å"
        )
        embedding_neurons: list[int] = Field(
            default_factory=lambda: [25, 50, 100], min_length=1,
            description="widths of the embedding net layers; the last is M1",
        )
        axis_neurons: int = Field(16, ge=1, description="M2: columns of T used as axes")
        fitting_neurons: list[int] = Field(
            default_factory=lambda: [240, 240, 240], min_length=1,
            description="widths of the hidden layers of the fitting net",
        )
        type_one_side: bool = Field(
            False, description="one embedding net per neighbour species instead of per pair"
        )
        activation: Literal["tanh", "silu", "ssp"] = Field("tanh", description="activation")
        avg_num_neighbors: float | None = Field(
            None, gt=0,
            description="mean neighbours per atom; sums are divided by 4x this; null: from the data"
        )

        @model_validator(mode="after")
        def _check(self):
            if self.rcut_smth >= self.cutoff:
                raise ValueError(
                    f"rcut_smth ({self.rcut_smth}) must be below cutoff ({self.cutoff})"
                )
            if any(n < 1 for n in self.embedding_neurons + self.fitting_neurons):
                raise ValueError("layer widths must be at least 1")
            if self.axis_neurons > self.embedding_neurons[-1]:
                raise ValueError(
                    f"axis_neurons ({self.axis_neurons}) cannot exceed the last embedding width "
                    f"({self.embedding_neurons[-1]})"
                )
            return self

    presets = {
        "small": {"embedding_neurons": [16, 32], "axis_neurons": 8, "fitting_neurons": [64, 64]},
        "medium": {"embedding_neurons": [25, 50, 100], "axis_neurons": 16,
                   "fitting_neurons": [240, 240, 240]},
        "large": {"embedding_neurons": [32, 64, 128], "axis_neurons": 16,
                  "fitting_neurons": [256, 256, 256, 256]},
    }

    @classmethod
    def receptive_hops(cls, config: Config) -> int:
        """Strictly local: one descriptor per atom from its neighbours within the cutoff."""
        return 1

    def invariant_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Radial histograms per neighbour species (the descriptor mixes its columns by
        the learnt embedding; the histograms are comparable across models)."""
        return radial_histogram(inputs, self.config.cutoff, self.num_species)

    def _net_species(self, name: str) -> tuple[str, int, int] | None:
        """(list, central species, neighbour species) of a tensor of a per-species net
        (the central species is -1 for one-side embedding nets); None for others."""
        parts = name.split(".")
        if parts[0] == "fitting_nets":
            return parts[0], int(parts[1]), -1
        if parts[0] == "embedding_nets":
            k = int(parts[1])
            if self.type_one_side:
                return parts[0], -1, k
            return parts[0], k // self.num_species, k % self.num_species
        return None

    def species_parameters(self) -> dict[str, SpeciesIndex]:
        """The fitting net of each species, the embedding net of each neighbour species
        (or pair: it counts as its central species') and the environment statistics."""
        index = {name: rows(value, self.num_species)
                 for name, value in self.state_dict().items() if name in ("env_mean", "env_std")}
        for name, value in self.state_dict().items():
            found = self._net_species(name)
            if found is not None:
                index[name] = per_species(value, found[1] if found[1] >= 0 else found[2])
        return index

    def grow_species(self, positions: Sequence[int], num_species: int) -> Grown:
        """See :meth:`Architecture.grow_species`: the nets of the old species (and pairs) are
        renumbered, those of new ones are fresh; the new species' environment statistics
        start at mean 0 and deviation 1."""
        old_state = self.state_dict()
        reference = old_state["env_mean"]
        grown = build_architecture(type(self), self.config.model_dump(), num_species).to(
            device=reference.device, dtype=reference.dtype)
        state = {name: value.clone() for name, value in grown.state_dict().items()}
        fresh: dict[str, torch.Tensor] = {}
        new_index = grown.species_parameters()
        for name in new_index:
            fresh[name] = torch.ones(state[name].shape, dtype=torch.bool)
        old_index = self.species_parameters()
        for name, value in old_state.items():
            found = self._net_species(name)
            if found is None and name in old_index:
                state[name], fresh[name] = carry(value, state[name], old_index[name],
                                                 new_index[name], positions)
                continue
            if found is None:
                state[name] = value
                continue
            kind, central, neighbour = found
            prefix, _, leaf = name.partition(".")[2].partition(".")
            if kind == "fitting_nets":
                k = positions[central]
            elif self.type_one_side:
                k = positions[neighbour]
            else:
                k = positions[central] * num_species + positions[neighbour]
            target = f"{kind}.{k}.{leaf}"
            state[target] = value
            fresh[target] = torch.zeros(value.shape, dtype=torch.bool)
        grown.load_state_dict(state, strict=True)
        return Grown(grown, fresh)

    def __init__(self, config: Config, num_species: int) -> None:
        super().__init__()
        self.config = config
        self.num_species = num_species
        self.cutoff = float(config.cutoff)
        self.rcut_smth = float(config.rcut_smth)
        self.axis_neurons = config.axis_neurons
        self.type_one_side = config.type_one_side
        self.norm = _SEL_FACTOR * float(config.avg_num_neighbors or 1.0)
        # every per-type net on every row, each row's selected (apply_by_group), as
        # torch.export needs; False: split by counts read from the data, the faster path
        self.exportable = False
        # the package (every per-type net on every row) took 0.93x the CPU per step of
        # TorchScript on 2048 Cu atoms (float32, one thread) with one net of each kind;
        # with more species it evaluates each row num_species (fitting) to num_species²
        # (embedding) times, so TorchScript stays the default there
        self.deploy_format = "aoti" if num_species == 1 else "torchscript"
        m1 = config.embedding_neurons[-1]
        num_nets = num_species if config.type_one_side else num_species * num_species
        self.embedding_nets = nn.ModuleList(
            ResidualMLP([1, *config.embedding_neurons], config.activation) for _ in range(num_nets)
        )
        for net in self.embedding_nets:
            nn.init.normal_(net.layers[0].weight, std=_EMBEDDING_INPUT_STD)
        self.fitting_nets = nn.ModuleList(
            ResidualMLP([m1 * config.axis_neurons, *config.fitting_neurons], config.activation,
                        final_linear=True)
            for _ in range(num_species)
        )
        default = torch.get_default_dtype()
        self.register_buffer("env_mean", torch.zeros(num_species, 4, dtype=default))
        self.register_buffer("env_std", torch.ones(num_species, 4, dtype=default))
        # whether env_mean/env_std come from data (saved with the weights); mirrored in a
        # Python flag so that forward never reads a device tensor to decide
        self.register_buffer("statistics_fitted", torch.zeros((), dtype=torch.bool))
        self._needs_statistics = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "statistics_fitted"
        if key in state_dict:
            self._needs_statistics = not bool(state_dict[key])

    def environment(
        self, vectors: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw environment rows ``s (1, x/r, y/r, z/r)`` (E, 4) and s (E,), unnormalised."""
        s = smooth_inverse_distance(lengths, self.rcut_smth, self.cutoff)
        rows = torch.cat([s.unsqueeze(-1), (s / lengths).unsqueeze(-1) * vectors], dim=-1)
        return rows, s

    def descriptor(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """The se_e2_a descriptor D (N, M1·M2) of every atom."""
        sender, receiver = graph[K.EDGE_INDEX][0], graph[K.EDGE_INDEX][1]
        species = graph[K.SPECIES]
        rows, s = self.environment(graph[K.EDGE_VECTORS], graph[K.EDGE_LENGTHS])
        central = species[sender]
        mean, std = self.env_mean[central], self.env_std[central]
        s_hat = (s - mean[:, 0]) / std[:, 0]
        rows = rows / std  # the difference from an empty DeePMD slot; see the module docstring
        neighbour = species[receiver]
        pair = neighbour if self.type_one_side else central * self.num_species + neighbour
        g = self._embed(s_hat.unsqueeze(-1), pair)  # (E, M1)
        n = species.shape[0]
        t = scatter_sum(rows.unsqueeze(-1) * g.unsqueeze(1), sender, n) / self.norm  # (N, 4, M1)
        d = torch.bmm(t.transpose(1, 2), t[:, :, : self.axis_neurons])  # (N, M1, M2)
        return d.reshape(n, -1)

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """Graph dict -> (N,) per-atom energies.

        The first call in training mode on a model whose statistics were never set (by
        :meth:`fit_statistics` or a loaded state) sets them from that batch, as DeePMD-kit
        computes davg/dstd from the first batches of the training data.
        """
        # a deployed (TorchScript) model never trains: it skips this block
        if not torch.jit.is_scripting() and self.training and self._needs_statistics:
            self.fit_statistics([{k: v.detach() for k, v in graph.items()}])
        d = self.descriptor(graph)
        return self._fit(d, graph[K.SPECIES])

    def _embed(self, x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """Row k is ``embedding_nets[pair[k]](x[k])`` (see :func:`group_rows`)."""
        if self.exportable:
            return self._embed_every_row(x, pair)
        order, counts = group_rows(pair, len(self.embedding_nets))
        chunks = torch.split(x[order], counts)
        outs = [net(chunks[k]) for k, net in enumerate(self.embedding_nets)]
        return ungroup_rows(torch.cat(outs), order)

    # unannotated: TorchScript cannot read this module's string annotations on a stub,
    # and takes its Tensor default (x, pair: Tensor -> Tensor)
    @torch.jit.unused
    def _embed_every_row(self, x, pair):  # noqa: ANN001, ANN202
        """:meth:`_embed` for ``torch.export`` (:func:`apply_by_group`; not TorchScript)."""
        return apply_by_group(self.embedding_nets, x, pair)

    @torch.jit.unused
    def _fit_every_row(self, d, species):  # noqa: ANN001, ANN202 (see _embed_every_row)
        """:meth:`_fit` for ``torch.export`` (:func:`apply_by_group`; not TorchScript)."""
        return apply_by_group(self.fitting_nets, d, species)

    def _fit(self, d: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Row k is ``fitting_nets[species[k]](d[k])`` (see :func:`group_rows`).

        Spelled out per ModuleList, like :meth:`_embed`: TorchScript cannot pass one.
        """
        if self.exportable:
            return self._fit_every_row(d, species)
        order, counts = group_rows(species, len(self.fitting_nets))
        chunks = torch.split(d[order], counts)
        outs = [net(chunks[k]) for k, net in enumerate(self.fitting_nets)]
        return ungroup_rows(torch.cat(outs), order)

    @torch.no_grad()
    def fit_statistics(
        self, graphs: Iterable[dict[str, torch.Tensor]], species_table: torch.Tensor | None = None
    ) -> None:
        """Set ``env_mean``/``env_std`` from the environments in ``graphs`` (DeePMD's davg/dstd).

        Per species of the central atom: the mean and standard deviation of s over its
        edges, and the root mean square of the three direction columns (shared), with
        DeePMD's floor of 0.01 on the deviations. Species without edges keep mean 0, std 1.

        Args:
            graphs: graph dicts (single structures or batches) with positions, cell,
                edge index and shifts; ``species`` is used when present.
            species_table: maps atomic numbers to species indices when a graph has no
                ``species`` (a Potential's ``species_table``).
        """
        count = torch.zeros(self.num_species, dtype=torch.float64)
        sum_s = torch.zeros_like(count)
        sum_s2 = torch.zeros_like(count)
        sum_a2 = torch.zeros_like(count)
        for graph in graphs:
            if K.SPECIES in graph:
                species = graph[K.SPECIES]
            else:
                species = species_table.to(graph[K.ATOMIC_NUMBERS].device)[graph[K.ATOMIC_NUMBERS]]
            sender = graph[K.EDGE_INDEX][0]
            if K.EDGE_VECTORS in graph:
                vectors = graph[K.EDGE_VECTORS].double()
            else:
                batch = graph.get(K.BATCH, torch.zeros_like(species))
                vectors = edge_vectors(graph[K.POSITIONS].double(), graph[K.CELL].double(),
                                       graph[K.EDGE_INDEX], graph[K.EDGE_SHIFT].double(), batch)
            rows, _ = self.environment(vectors, vectors.norm(dim=-1))
            rows, central = rows.cpu(), species[sender].cpu()
            n = self.num_species
            count += torch.bincount(central, minlength=n).double()
            sum_s += scatter_sum(rows[:, 0], central, n)
            sum_s2 += scatter_sum(rows[:, 0] ** 2, central, n)
            sum_a2 += scatter_sum((rows[:, 1:] ** 2).sum(-1), central, n)
        has = count > 0
        safe = count.clamp(min=1.0)
        mean_s = sum_s / safe
        std_s = (sum_s2 / safe - mean_s**2).clamp(min=0.0).sqrt().clamp(min=_MIN_STD)
        std_a = (sum_a2 / (3.0 * safe)).sqrt().clamp(min=_MIN_STD)
        mean = torch.zeros(n, 4, dtype=torch.float64)
        std = torch.ones(n, 4, dtype=torch.float64)
        mean[has, 0] = mean_s[has]
        std[has, 0] = std_s[has]
        std[has, 1:] = std_a[has].unsqueeze(-1)
        self.env_mean.copy_(mean.to(self.env_mean))
        self.env_std.copy_(std.to(self.env_std))
        self.statistics_fitted.fill_(True)
        self._needs_statistics = False
