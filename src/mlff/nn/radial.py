"""Radial bases and smooth cutoff envelopes of edge lengths.

All functions take edge lengths ``r`` of shape (E,) in Å and return (E, num_basis) or
(E,) tensors. Every envelope goes to zero with vanishing first and second derivatives at
the cutoff (polynomial) or vanishing first derivative (cosine), so energies and forces
stay continuous as atoms cross it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class BesselBasis(nn.Module):
    """``sqrt(2/rc) sin(n π r / rc) / r`` for n = 1..num_basis (DimeNet, NequIP, PaiNN).

    Args:
        cutoff: rc, Å.
        num_basis: number of functions.
        trainable: learn the frequencies.
    """

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = False) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        frequencies = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi
        if trainable:
            self.frequencies = nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths -> (E, num_basis)."""
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * r / self.cutoff) / r


class GaussianBasis(nn.Module):
    """Gaussians ``exp(-(r - μ_k)² / 2σ²)`` with centres evenly spread on [start, cutoff] (SchNet).

    Args:
        cutoff: last centre, Å.
        num_basis: number of Gaussians.
        start: first centre, Å.
    """

    def __init__(self, cutoff: float, num_basis: int = 50, start: float = 0.0) -> None:
        super().__init__()
        centers = torch.linspace(start, cutoff, num_basis, dtype=torch.get_default_dtype())
        self.register_buffer("centers", centers)
        width = (cutoff - start) / max(num_basis - 1, 1)
        self.coefficient = -0.5 / width**2

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths -> (E, num_basis)."""
        return torch.exp(self.coefficient * (r.unsqueeze(-1) - self.centers) ** 2)


class PolynomialCutoff(nn.Module):
    """The polynomial envelope of DimeNet/NequIP with exponent ``p``: 1 at r=0, 0 at rc.

    Smooth to second order at the cutoff; zero beyond it.
    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths -> (E,) envelope values."""
        p = self.p
        x = r / self.cutoff
        envelope = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(p)
            + p * (p + 2.0) * x.pow(p + 1.0)
            - p * (p + 1.0) / 2.0 * x.pow(p + 2.0)
        )
        return envelope * (x < 1.0).to(r.dtype)


class XPLORCutoff(nn.Module):
    """XPLOR switching: 1 below ``cutoff_on``, then a smooth step to 0 at the cutoff.

    ``s(r) = (rc² - r²)² (rc² + 2r² - 3 ron²) / (rc² - ron²)³`` for ron <= r < rc (SevenNet);
    continuous with a continuous first derivative at both ends.

    Args:
        cutoff: rc, Å.
        cutoff_on: ron < rc, Å.
    """

    def __init__(self, cutoff: float, cutoff_on: float) -> None:
        super().__init__()
        if not 0 < cutoff_on < cutoff:
            raise ValueError(f"XPLOR switching needs 0 < cutoff_on < cutoff, got {cutoff_on}, {cutoff}")
        self.cutoff = float(cutoff)
        self.cutoff_on = float(cutoff_on)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths -> (E,) switching values."""
        r_sq = r * r
        on_sq = self.cutoff_on * self.cutoff_on
        cut_sq = self.cutoff * self.cutoff
        switch = (cut_sq - r_sq) ** 2 * (cut_sq + 2 * r_sq - 3 * on_sq) / (cut_sq - on_sq) ** 3
        inside = (r < self.cutoff).to(r.dtype)
        return torch.where(r < self.cutoff_on, torch.ones_like(r), switch) * inside


class CosineCutoff(nn.Module):
    """``0.5 (cos(π r / rc) + 1)`` inside the cutoff, zero beyond (Behler, SchNet)."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths -> (E,) envelope values."""
        return 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0) * (r < self.cutoff).to(r.dtype)


def radial_basis(name: str, cutoff: float, num_basis: int) -> nn.Module:
    """Build a radial basis by name: ``"bessel"`` or ``"gaussian"``."""
    if name == "bessel":
        return BesselBasis(cutoff, num_basis)
    if name == "gaussian":
        return GaussianBasis(cutoff, num_basis)
    raise ValueError(f"unknown radial basis {name!r}; choose 'bessel' or 'gaussian'")


class ChebyshevBasis(nn.Module):
    """Chebyshev polynomials of the first kind ``T_n(r)`` for n = 1..num_basis, of r in Å.

    mace-torch's ``radial_type: chebyshev`` (the lengths enter unscaled).
    """

    def __init__(self, num_basis: int = 8) -> None:
        super().__init__()
        self.num_basis = int(num_basis)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths -> (E, num_basis)."""
        orders = torch.arange(1, self.num_basis + 1, dtype=r.dtype, device=r.device)
        x = r.unsqueeze(-1).expand(r.shape[0], self.num_basis)
        return torch.special.chebyshev_polynomial_t(x, orders.expand(r.shape[0], self.num_basis))


def _covalent_radii(dtype: torch.dtype | None = None) -> torch.Tensor:
    """ASE's covalent radii (Å) indexed by atomic number, in ``dtype`` (default dtype if None)."""
    from ase.data import covalent_radii

    return torch.tensor(covalent_radii, dtype=dtype or torch.get_default_dtype())


class AgnesiTransform(nn.Module):
    """Agnesi distance transform (ACEpotentials.jl): r -> 1 / (1 + a x^q / (1 + x^(q-p))).

    x = r / r0 with r0 the mean covalent radius of the pair. Used before the radial basis
    (the cutoff envelope still sees r). The parameters are persistent buffers.
    """

    def __init__(self, q: float = 0.9183, p: float = 4.5791, a: float = 1.0805) -> None:
        super().__init__()
        dtype = torch.get_default_dtype()
        self.register_buffer("q", torch.tensor(q, dtype=dtype))
        self.register_buffer("p", torch.tensor(p, dtype=dtype))
        self.register_buffer("a", torch.tensor(a, dtype=dtype))
        self.register_buffer("covalent_radii", _covalent_radii())

    def forward(self, r: torch.Tensor, z_sender: torch.Tensor, z_receiver: torch.Tensor) -> torch.Tensor:
        """(E,) lengths, (E,) atomic numbers of both ends -> (E,) transformed lengths."""
        r0 = 0.5 * (self.covalent_radii[z_sender] + self.covalent_radii[z_receiver])
        x = r / r0
        return 1.0 / (1.0 + self.a * torch.pow(x, self.q) / (1.0 + torch.pow(x, self.q - self.p)))


class SoftTransform(nn.Module):
    """Soft distance transform: r -> p0 + (r - p0) (1 + tanh(α (r - m))) / 2.

    p0 = 3/4 r0, p1 = 4/3 r0, m = (p0 + p1) / 2, α = alpha / (p1 - p0), with r0 the sum of
    the pair's covalent radii: close pairs are held near p0, distant ones pass unchanged.
    """

    def __init__(self, alpha: float = 4.0) -> None:
        super().__init__()
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.get_default_dtype()))
        self.register_buffer("covalent_radii", _covalent_radii())

    def forward(self, r: torch.Tensor, z_sender: torch.Tensor, z_receiver: torch.Tensor) -> torch.Tensor:
        """(E,) lengths, (E,) atomic numbers of both ends -> (E,) transformed lengths."""
        r0 = self.covalent_radii[z_sender] + self.covalent_radii[z_receiver]
        p0 = 0.75 * r0
        p1 = (4.0 / 3.0) * r0
        m = 0.5 * (p0 + p1)
        alpha = self.alpha / (p1 - p0)
        return p0 + (r - p0) * (0.5 * (1.0 + torch.tanh(alpha * (r - m))))
