"""Ziegler-Biersack-Littmark (ZBL) screened nuclear repulsion, a physical pair term.

    V(r) = 1/2 Σ_pairs k Z_i Z_j / r · φ(r / a) · f(r),   a = 0.4543 · 0.529 / (Z_i^0.3 + Z_j^0.3)

with φ(x) = Σ_k c_k exp(-d_k x) (the universal screening function), k = 14.3996 eV·Å and
f the polynomial envelope that takes the term smoothly to zero at the sum of the two
covalent radii (ASE's table): it acts only at close approach, where training data are
scarce and a learned potential alone may let atoms overlap. The form and constants are
those of mace-torch's ``pair_repulsion``, so imported models reproduce it exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from mlff.nn.radial import _covalent_radii
from mlff.nn.scatter import scatter_sum



class ZBLRepulsion(nn.Module):
    """Per-atom ZBL repulsion energies (N,), eV (each pair shared half and half).

    Args:
        envelope_exponent: p of the polynomial envelope that ends at the covalent radii sum.

    The screening coefficients, the screening-length constants, the covalent radii and an
    overall ``factor`` (1 for the physical term) are persistent buffers, so that a model
    file carries exactly the values it was trained with.
    """

    def __init__(self, envelope_exponent: int = 5) -> None:
        super().__init__()
        dtype = torch.float64  # cast with the model; values unrounded until then
        self.p = float(envelope_exponent)
        self.register_buffer("c", torch.tensor([0.1818, 0.5099, 0.2802, 0.02817], dtype=dtype))
        self.register_buffer("a_exp", torch.tensor(0.300, dtype=dtype))
        self.register_buffer("a_prefactor", torch.tensor(0.4543, dtype=dtype))
        self.register_buffer("covalent_radii", _covalent_radii(dtype))
        self.register_buffer("factor", torch.tensor(1.0, dtype=dtype))

    def forward(self, lengths: torch.Tensor, edge_index: torch.Tensor,
                atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Edge lengths (E,) Å, edge_index (2, E) sender/receiver, atomic numbers (N,) -> (N,) eV."""
        z_sender = atomic_numbers[edge_index[0]]
        z_receiver = atomic_numbers[edge_index[1]]
        r_max = self.covalent_radii[z_sender] + self.covalent_radii[z_receiver]
        z_sender = z_sender.to(lengths.dtype)
        z_receiver = z_receiver.to(lengths.dtype)
        # 0.529 Å: Bohr radius; 14.3996 eV·Å: e²/(4π ε0) (literals: TorchScript reads no globals)
        a = self.a_prefactor * 0.529 / (torch.pow(z_sender, self.a_exp) + torch.pow(z_receiver, self.a_exp))
        x = lengths / a
        phi = (self.c[0] * torch.exp(-3.2 * x) + self.c[1] * torch.exp(-0.9423 * x)
               + self.c[2] * torch.exp(-0.4028 * x) + self.c[3] * torch.exp(-0.2016 * x))
        v = (14.3996 * z_sender * z_receiver) / lengths * phi
        p = self.p
        u = lengths / r_max
        envelope = (1.0 - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(u, p)
                    + p * (p + 2.0) * torch.pow(u, p + 1.0)
                    - p * (p + 1.0) / 2.0 * torch.pow(u, p + 2.0)) * (lengths < r_max).to(lengths.dtype)
        per_edge = 0.5 * v * envelope
        return self.factor * scatter_sum(per_edge, edge_index[1], atomic_numbers.shape[0])
