"""The calculator on a CUDA device gives the CPU's results (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlff import MLFFCalculator
from tests import helpers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("architecture", ["mace", "nequip", "painn", "schnet", "allegro", "deeppot"])
def test_cuda_equals_cpu(architecture):
    potential = helpers.build_potential(architecture)
    atoms = helpers.copper().repeat((2, 2, 2))
    results = []
    for device in ("cpu", "cuda"):
        calculator = MLFFCalculator(potential, device=device)
        results.append({name: calculator.get_property(name, atoms)
                        for name in ("energy", "forces", "stress")})
    for name in ("energy", "forces", "stress"):
        np.testing.assert_allclose(results[1][name], results[0][name], rtol=0, atol=1e-9)


def test_cuda_chunked_equals_whole():
    potential = helpers.build_potential("mace")
    atoms = helpers.copper().repeat((3, 3, 3))
    whole = MLFFCalculator(potential, device="cuda", max_atoms_per_chunk=0)
    chunked = MLFFCalculator(potential, device="cuda", max_atoms_per_chunk=30)
    for name in ("energy", "forces", "stress"):
        np.testing.assert_allclose(chunked.get_property(name, atoms),
                                   whole.get_property(name, atoms), rtol=0, atol=1e-9)
