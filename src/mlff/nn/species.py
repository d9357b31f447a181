"""Which entries of a layer's tensors belong to which species, for adding elements.

A model that learns per-element weights (an embedding table, a one-hot ``o3.Linear``,
a tensor product with the one-hot species, per-species scales) describes each such tensor
by a :class:`SpeciesIndex`. :func:`carry` then moves a trained tensor into the same
tensor of a model with more species: the entries of each old species go to its new
position, scaled so that the layer computes exactly what it did (e3nn divides by the
square root of the fan-in, which grows with the number of species), and the entries of
the new species keep their fresh initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from e3nn import o3


@dataclass(frozen=True)
class SpeciesIndex:
    """The species of every entry of one tensor.

    Attributes:
        species: int64, the tensor's shape: the index of the species an entry belongs
            to, -1 for an entry every species shares.
        factor: float64, the tensor's shape: the constant the layer multiplies the entry
            by in its forward pass (e3nn's path weight; 1 for plain layers).
    """

    species: torch.Tensor
    factor: torch.Tensor


def rows(tensor: torch.Tensor, num_species: int, axis: int = 0, start: int = 0) -> SpeciesIndex:
    """Positions ``start .. start + num_species - 1`` along ``axis`` are the species;
    other positions along it are shared."""
    shape = [1] * tensor.dim()
    shape[axis] = tensor.shape[axis]
    index = torch.full((tensor.shape[axis],), -1, dtype=torch.int64)
    index[start:start + num_species] = torch.arange(num_species)
    species = index.view(shape).expand(tensor.shape).contiguous()
    return SpeciesIndex(species, torch.ones(tensor.shape, dtype=torch.float64))


def per_species(tensor: torch.Tensor, species: int) -> SpeciesIndex:
    """Every entry of ``tensor`` belongs to ``species`` (a module of one species)."""
    return SpeciesIndex(torch.full(tensor.shape, species, dtype=torch.int64),
                        torch.ones(tensor.shape, dtype=torch.float64))


def e3nn_weights(module: o3.Linear | o3.TensorProduct, num_species: int,
                 operand: int = 0) -> SpeciesIndex:
    """The species of the ``weight`` entries of an e3nn ``Linear`` or ``TensorProduct``.

    The one-hot species are the first ``num_species`` copies of the first irrep of the
    module's input (``operand`` 0) or, for a tensor product, of its second input
    (``operand`` 1). Tensor products must use "uvw" paths (as ``FullyConnectedTensorProduct``).
    """
    species, factor = [], []
    for instruction in module.instructions:
        if isinstance(module, o3.Linear):
            entry = instruction.i_in
            weighted = True
        else:
            entry = (instruction.i_in1, instruction.i_in2)[operand]
            weighted = instruction.has_weight
            if weighted and instruction.connection_mode != "uvw":
                raise ValueError(f"species weights of {instruction.connection_mode!r} paths")
        if not weighted:
            continue
        shape = tuple(instruction.path_shape)
        block = torch.full(shape, -1, dtype=torch.int64)
        if entry == 0:
            axis = operand if isinstance(module, o3.TensorProduct) else 0
            count = min(num_species, shape[axis])
            view = [1] * len(shape)
            view[axis] = shape[axis]
            index = torch.full((shape[axis],), -1, dtype=torch.int64)
            index[:count] = torch.arange(count)
            block = index.view(view).expand(shape)
        species.append(block.reshape(-1))
        factor.append(torch.full((block.numel(),), float(instruction.path_weight),
                                 dtype=torch.float64))
    return SpeciesIndex(torch.cat(species), torch.cat(factor))


def carry(
    old: torch.Tensor,
    fresh: torch.Tensor,
    old_index: SpeciesIndex,
    new_index: SpeciesIndex,
    positions: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fresh`` with the entries of ``old`` moved in.

    Args:
        old: the trained tensor.
        fresh: the same tensor of a model with more species, freshly initialised.
        old_index, new_index: the species of their entries.
        positions: the new index of each old species.

    Returns:
        The carried tensor (``fresh``'s dtype) and a bool mask of its entries that kept
        their fresh values (those of the new species).
    """
    out = fresh.detach().clone().reshape(-1)
    kept = torch.ones(out.shape, dtype=torch.bool)
    source = old.detach().reshape(-1).to(device="cpu", dtype=torch.float64)  # as the indices
    old_species, new_species = old_index.species.reshape(-1), new_index.species.reshape(-1)
    old_factor, new_factor = old_index.factor.reshape(-1), new_index.factor.reshape(-1)
    pairs = [(-1, -1)] + [(s, int(p)) for s, p in enumerate(positions)]
    for before, after in pairs:
        src = (old_species == before).nonzero().squeeze(1)
        dst = (new_species == after).nonzero().squeeze(1)
        if len(src) != len(dst):
            raise ValueError(f"species {before} has {len(src)} entries, {len(dst)} after growing")
        ratio = old_factor[src] / new_factor[dst]  # exactly 1 where nothing changed
        moved = source[src] * ratio
        out[dst.to(out.device)] = moved.to(device=out.device, dtype=out.dtype)
        kept[dst] = False
    return out.reshape(fresh.shape), kept.reshape(fresh.shape)
