"""ZBL repulsion: the formula, its cutoff, and the ``zbl`` option of every architecture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import covalent_radii

from mlff.data import keys as K
from mlff.models.io import save_model
from mlff.nn.zbl import ZBLRepulsion
from mlff.uq.io import load_model
from tests import helpers


def zbl_pair(z1: int, z2: int, r: float, p: int = 5) -> float:
    """ZBL energy of one pair, eV, written out from Ziegler, Biersack and Littmark (1985)."""
    a = 0.4543 * 0.529 / (z1**0.3 + z2**0.3)
    x = r / a
    phi = (0.1818 * math.exp(-3.2 * x) + 0.5099 * math.exp(-0.9423 * x)
           + 0.2802 * math.exp(-0.4028 * x) + 0.02817 * math.exp(-0.2016 * x))
    r_max = covalent_radii[z1] + covalent_radii[z2]
    u = r / r_max
    envelope = (1 - (p + 1) * (p + 2) / 2 * u**p + p * (p + 2) * u ** (p + 1)
                - p * (p + 1) / 2 * u ** (p + 2)) if u < 1 else 0.0
    return 14.3996 * z1 * z2 / r * phi * envelope


def dimer_energy(term: ZBLRepulsion, z1: int, z2: int, r: float) -> torch.Tensor:
    lengths = torch.tensor([r, r], dtype=torch.float64)
    edges = torch.tensor([[0, 1], [1, 0]])
    return term(lengths, edges, torch.tensor([z1, z2])).sum()


@pytest.mark.parametrize(("z1", "z2", "r"), [(1, 1, 0.3), (29, 29, 1.2), (8, 26, 0.9), (6, 14, 2.0)])
def test_pair_energy_matches_the_written_out_formula(z1, z2, r):
    term = ZBLRepulsion(5).double()
    assert dimer_energy(term, z1, z2, r).item() == pytest.approx(zbl_pair(z1, z2, r), rel=1e-12)


def test_repulsive_smooth_and_zero_beyond_the_covalent_radii():
    term = ZBLRepulsion(5).double()
    r_max = 2 * covalent_radii[29]
    radii = np.linspace(0.5, r_max * 1.2, 200)
    energies = np.array([dimer_energy(term, 29, 29, r).item() for r in radii])
    assert (energies[radii < r_max] > 0).all()
    assert (energies[radii >= r_max] == 0).all()
    assert (np.diff(energies[radii < r_max]) < 0).all()  # monotonically repulsive
    r = torch.tensor(r_max - 1e-6, dtype=torch.float64, requires_grad=True)
    energy = term(torch.stack([r, r]), torch.tensor([[0, 1], [1, 0]]), torch.tensor([29, 29])).sum()
    (grad,) = torch.autograd.grad(energy, r)
    assert abs(grad.item()) < 1e-8  # the envelope ends with zero slope


@pytest.mark.parametrize("architecture", ["schnet", "mace"])
def test_any_architecture_carries_it_through_the_model_file(architecture, tmp_path):
    plain = helpers.build_potential(architecture)
    with_zbl = helpers.build_potential(architecture, zbl=True)
    atoms = Atoms("OH", positions=[[0, 0, 0], [0.5, 0, 0]])
    graph = helpers.graph_of(atoms, plain.cutoff)
    difference = with_zbl(graph)[K.ENERGY] - plain(graph)[K.ENERGY]
    assert difference.item() == pytest.approx(zbl_pair(8, 1, 0.5), rel=1e-10)
    loaded = load_model(save_model(with_zbl, tmp_path / "zbl.mlff"))
    assert loaded.hyperparameters["zbl"] is True
    torch.testing.assert_close(loaded(graph)[K.FORCES], with_zbl(graph)[K.FORCES])
