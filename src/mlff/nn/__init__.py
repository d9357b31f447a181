"""Layers shared by the architectures: radial bases, cutoffs, MLPs, scatter."""

from mlff.nn.mlp import MLP, ShiftedSoftplus, activation
from mlff.nn.radial import BesselBasis, CosineCutoff, GaussianBasis, PolynomialCutoff, radial_basis
from mlff.nn.scatter import gather, scatter_sum

__all__ = [
    "MLP",
    "BesselBasis",
    "CosineCutoff",
    "GaussianBasis",
    "PolynomialCutoff",
    "ShiftedSoftplus",
    "activation",
    "gather",
    "radial_basis",
    "scatter_sum",
]
