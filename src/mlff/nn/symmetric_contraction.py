"""Symmetric contraction: equivariant polynomials of one atom's features (MACE's product basis).

For every channel c of an atom's features A (one copy of ``irreps_in`` per channel), the
contraction of correlation order ν builds all equivariant, fully symmetric polynomials of
degree ν in the components of A:

    B[c, L] = Σ_ν Σ_q W_ν,L[z, q, c] Σ_{i1..iν} U_ν,L[q; i1..iν] A[c, i1] ... A[c, iν]

where the U_ν,L (q = 1..K_ν,L independent couplings) span the symmetric tensors of rank ν
that transform as the irrep L, obtained from :class:`e3nn.o3.ReducedTensorProducts`, and
the weights W depend on the atom's species z. Since U is symmetric in its indices, the sum
runs over sorted index tuples only (the monomials A[i1]..A[iν] with i1 ≤ .. ≤ iν), each
with its multiplicity; tuples whose coefficients all vanish are dropped, which makes the
contraction a gather, a product and one small dense matrix product per order.
"""

from __future__ import annotations

import functools
import itertools
import math
import string

import numpy as np
import torch
from e3nn import o3
from torch import nn

from mlff.nn.dtype import default_dtype


def _symmetric_formula(order: int) -> str:
    """e3nn formula of a fully symmetric tensor of rank ``order``, e.g. ``ijk=jik=ikj``."""
    letters = string.ascii_lowercase[8 : 8 + order]
    swaps = [letters]
    for k in range(order - 1):
        swapped = list(letters)
        swapped[k], swapped[k + 1] = swapped[k + 1], swapped[k]
        swaps.append("".join(swapped))
    return "=".join(swaps)


@functools.lru_cache(maxsize=32)
def monomial_coefficients(
    irreps_in: str, irrep_out: str, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """The sorted index tuples and coefficients of the order-``order`` couplings to ``irrep_out``.

    Args:
        irreps_in: irreps of one channel's features, e.g. ``"0e+1o+2e+3o"`` (dimension D).
        irrep_out: one irrep, e.g. ``"1o"`` (dimension 2L+1).
        order: correlation order ν ≥ 1.

    Returns:
        tuples: (T, ν) int64, sorted index tuples into the D components.
        coefficients: (T, K, 2L+1) float64; K = number of independent couplings (0 if none).
    """
    ir_out = o3.Irrep(irrep_out)
    dim_in = o3.Irreps(irreps_in).dim
    with default_dtype(torch.float64):  # the coupling coefficients need full precision
        formula = "i" if order == 1 else _symmetric_formula(order)
        try:
            reduced = o3.ReducedTensorProducts(formula, filter_ir_out=[ir_out],
                                               **{formula[0]: o3.Irreps(irreps_in)})
        except ValueError:  # no coupling reaches ir_out (e.g. 1o from even irreps only)
            return np.zeros((0, order), np.int64), np.zeros((0, 0, ir_out.dim))
        basis = reduced.change_of_basis.numpy()
    num_couplings = basis.shape[0] // ir_out.dim
    basis = basis.reshape(num_couplings, ir_out.dim, *([dim_in] * order))
    tuples, rows = [], []
    for index in itertools.combinations_with_replacement(range(dim_in), order):
        value = basis[(slice(None), slice(None), *index)]
        if np.abs(value).max(initial=0.0) < 1e-12:
            continue
        multiplicity = math.factorial(order)
        for count in np.unique(index, return_counts=True)[1]:
            multiplicity //= math.factorial(int(count))
        tuples.append(index)
        rows.append(multiplicity * value)
    if not tuples:
        return np.zeros((0, order), np.int64), np.zeros((0, num_couplings, ir_out.dim))
    return np.asarray(tuples, np.int64), np.stack(rows)


class _OrderTerms(nn.Module):
    """The constants of one correlation order: index tuples (ν, T) and coupling matrix.

    A module of its own (no parameters, non-persistent buffers), so that the buffers move
    and cast with the model and TorchScript can loop over the orders.
    """

    def __init__(self, tuples: torch.Tensor, matrix: torch.Tensor, counts: list[int]) -> None:
        super().__init__()
        self.register_buffer("tuples", tuples, persistent=False)
        self.register_buffer("matrix", matrix, persistent=False)
        self.counts = counts  # couplings K of each output irrep


class SymmetricContraction(nn.Module):
    """Per-channel equivariant polynomials up to a correlation order, species-weighted.

    Args:
        irreps_in: irreps of one channel (e.g. ``0e+1o+2e+3o``); input (N, C, irreps_in.dim).
        irreps_out: irreps of one channel of the output (e.g. ``0e`` or ``0e+1o``), each
            with multiplicity 1.
        correlation: the highest order ν (MACE's body order minus one).
        num_species: number of species (weights per species).
        num_channels: C.

    Output: (N, C·irreps_out.dim) in e3nn layout of ``C x irreps_out`` (irrep blocks of
    (C, 2L+1)).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, correlation: int,
                 num_species: int, num_channels: int) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.correlation = correlation
        self.num_channels = num_channels
        dtype = torch.get_default_dtype()
        self.out_dims: list[int] = []
        self.weights = nn.ParameterList()
        self.orders = nn.ModuleList()  # one _OrderTerms per order 1..correlation
        for mul, ir in self.irreps_out:
            if mul != 1:
                raise ValueError(f"irreps_out must have multiplicity 1 per channel, got {irreps_out}")
            self.out_dims.append(ir.dim)
        # one gather + matrix product per order, over all output irreps at once
        for order in range(1, correlation + 1):
            blocks = [monomial_coefficients(str(self.irreps_in), str(ir), order)
                      for _, ir in self.irreps_out]
            tuples = sorted({tuple(t) for tup, _ in blocks for t in tup})
            position = {t: k for k, t in enumerate(tuples)}
            width = sum(c.shape[1] * c.shape[2] for _, c in blocks)
            matrix = np.zeros((len(tuples), width))
            column = 0
            counts = []
            for tup, coefficients in blocks:
                k, d = coefficients.shape[1], coefficients.shape[2]
                for t, row in zip(tup, coefficients):
                    matrix[position[tuple(t)], column : column + k * d] = row.reshape(-1)
                column += k * d
                counts.append(k)
            index = torch.as_tensor(np.asarray(tuples, np.int64).reshape(-1, order))
            self.orders.append(_OrderTerms(index.T.contiguous(),
                                           torch.as_tensor(matrix, dtype=dtype), counts))
            for k in counts:
                self.weights.append(nn.Parameter(torch.randn(num_species, k, num_channels,
                                                             dtype=dtype) / max(k, 1)))

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """features (N, C, irreps_in.dim), species (N,) -> (N, C·irreps_out.dim)."""
        n, c = features.shape[0], features.shape[1]
        outputs = [features.new_zeros((n, c, d)) for d in self.out_dims]
        weights = [w for w in self.weights]
        weight_index = 0
        # components outermost, channels innermost: the gathers below move contiguous
        # (N, C) slabs, and the coupling matrix multiplies one (T, N·C) matrix (a batched
        # product would copy the matrix once per atom)
        by_component = features.permute(2, 0, 1).contiguous()  # (D, N, C)
        for order_index, terms in enumerate(self.orders):
            tuples = terms.tuples
            # index_select: its backward is an index_add, not an accumulating index_put
            # Tensor methods: torch_geometric replaces torch.index_select (see nn.scatter)
            monomials = by_component.index_select(0, tuples[0])  # (T, N, C)
            for k in range(1, order_index + 1):
                monomials = monomials * by_component.index_select(0, tuples[k])
            projected = torch.mm(terms.matrix.t(), monomials.reshape(monomials.shape[0], n * c))
            projected = projected.reshape(-1, n, c)  # (width, N, C)
            column = 0
            for j in range(len(self.out_dims)):
                k, d = terms.counts[j], self.out_dims[j]
                weight = weights[weight_index][species]  # (N, K, C)
                weight_index += 1
                block = projected[column : column + k * d].reshape(k, d, n, c)
                column += k * d
                outputs[j] = outputs[j] + torch.einsum("kdnc,nkc->ncd", block, weight)
        return torch.cat([o.reshape(n, -1) for o in outputs], dim=-1)
