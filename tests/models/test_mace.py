"""MACE internals: equivariant atomic basis, and the symmetric contraction's algebra."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from mlff.nn.dtype import default_dtype
from mlff.nn.symmetric_contraction import SymmetricContraction
from tests import helpers
from tests.models.equivariance import feature_equivariance_error
from tests.models.physics import random_rotation

IRREPS = o3.Irreps("0e+1o+2e+3o")


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "rotoreflection"])
@pytest.mark.parametrize("structure", ["ethanol", "copper"])
def test_atomic_basis_is_equivariant(structure, proper):
    atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
    for seed in range(2):
        error, size, irreps = feature_equivariance_error("mace", atoms, random_rotation(seed, proper))
        assert {ir.l for _, ir in irreps} == {0, 1, 2, 3}
        assert size > 1e-3
        assert error < 1e-10 * max(size, 1.0)


def test_inversion_flips_odd_features():
    error, size, irreps = feature_equivariance_error("mace", helpers.ethanol(), -torch.eye(3).numpy())
    assert error < 1e-10
    assert any(ir.p == -1 for _, ir in irreps)


def _dense_reference(features, coefficients_by_order, weights_by_order):
    """Σ_ν Σ_q W[q,c] U[q, M; i1..iν] A[c,i1]..A[c,iν] by brute force (one species)."""
    out = 0.0
    channels = features.shape[0]
    for order, (basis, weight) in enumerate(zip(coefficients_by_order, weights_by_order), 1):
        term = basis.unsqueeze(0).expand(channels, *basis.shape)  # (C, K, M, D, .., D)
        for _ in range(order):
            a = features.view(channels, *([1] * (term.dim() - 2)), -1)
            term = (term * a).sum(-1)
        out = out + torch.einsum("ckm,kc->cm", term, weight)
    return out


@pytest.mark.parametrize("irrep_out", ["0e", "1o"])
def test_contraction_equals_the_dense_sum_over_all_index_tuples(irrep_out):
    torch.manual_seed(0)
    channels = 3
    features = torch.randn(1, channels, IRREPS.dim, dtype=torch.float64)
    species = torch.tensor([1])
    with default_dtype(torch.float64):
        contraction = SymmetricContraction(IRREPS, o3.Irreps(f"1x{irrep_out}"), 3, 2, channels)
        bases = []
        for order, formula in enumerate(["i", "ij=ji", "ijk=jik=ikj"], 1):
            reduced = o3.ReducedTensorProducts(formula, filter_ir_out=[irrep_out], i=IRREPS)
            ir = o3.Irrep(irrep_out)
            q = reduced.change_of_basis
            bases.append(q.reshape(q.shape[0] // ir.dim, ir.dim, *([IRREPS.dim] * order)))
    weights = [w[1] for w in contraction.weights]
    expected = _dense_reference(features[0], bases, weights)
    result = contraction(features, species).reshape(channels, -1)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-12)


def test_each_order_is_a_homogeneous_polynomial():
    # keeping only the weights of order ν, scaling A by λ scales B by λ^ν
    torch.manual_seed(1)
    contraction = SymmetricContraction(IRREPS, o3.Irreps("1x0e"), 3, 1, 4).double()
    features = torch.randn(5, 4, IRREPS.dim, dtype=torch.float64)
    species = torch.zeros(5, dtype=torch.long)
    for order in (1, 2, 3):
        with torch.no_grad():
            for k, weight in enumerate(contraction.weights):
                weight.fill_(1.0 if k == order - 1 else 0.0)
        base = contraction(features, species)
        assert base.abs().max() > 1e-6
        torch.testing.assert_close(contraction(2.0 * features, species), 2.0**order * base)


def test_weights_depend_on_species():
    torch.manual_seed(2)
    contraction = SymmetricContraction(IRREPS, o3.Irreps("1x0e"), 3, 2, 4).double()
    features = torch.randn(1, 4, IRREPS.dim, dtype=torch.float64)
    first = contraction(features, torch.tensor([0]))
    second = contraction(features, torch.tensor([1]))
    assert (first - second).abs().max() > 1e-6
