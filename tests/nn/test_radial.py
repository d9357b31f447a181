"""Radial bases and cutoff envelopes: values, zeros, smoothness at the cutoff."""

from __future__ import annotations

import math

import pytest
import torch

from mlff.nn import BesselBasis, CosineCutoff, GaussianBasis, PolynomialCutoff, radial_basis

CUTOFF = 4.0


def derivatives(module, r: torch.Tensor, order: int = 2) -> list[torch.Tensor]:
    """Values and the first ``order`` derivatives of an elementwise module at ``r``."""
    r = r.clone().requires_grad_(True)
    values = [module(r)]
    for _ in range(order):
        (grad,) = torch.autograd.grad(values[-1].sum(), r, create_graph=True)
        values.append(grad)
    return [v.detach() for v in values]


@pytest.mark.parametrize("p", [2, 5, 6, 9])
def test_polynomial_cutoff_values(p):
    envelope = PolynomialCutoff(CUTOFF, p)
    r = torch.tensor([0.0, CUTOFF, CUTOFF + 1e-9, CUTOFF + 0.5, 10.0], dtype=torch.float64)
    value = envelope(r)
    assert value[0] == 1.0
    assert value[1:].abs().max() == 0.0
    inside = torch.linspace(0, CUTOFF, 200, dtype=torch.float64)
    values = envelope(inside)
    assert (values[:-1] > 0).all() and (values <= 1).all()
    assert (values.diff() <= 1e-15).all()  # decreasing


@pytest.mark.parametrize("p", [2, 6])
def test_polynomial_cutoff_is_smooth_at_the_cutoff(p):
    envelope = PolynomialCutoff(CUTOFF, p)
    below = torch.tensor([CUTOFF - 1e-6], dtype=torch.float64)
    above = torch.tensor([CUTOFF + 1e-6], dtype=torch.float64)
    value_b, first_b, second_b = derivatives(envelope, below)
    value_a, first_a, second_a = derivatives(envelope, above)
    assert value_a == 0 and first_a == 0 and second_a == 0
    assert abs(value_b) < 1e-9 and abs(first_b) < 1e-5 and abs(second_b) < 1e-3
    # and the derivative is not trivially zero inside
    _, first_mid, _ = derivatives(envelope, torch.tensor([0.7 * CUTOFF], dtype=torch.float64))
    assert first_mid < -0.1


def test_polynomial_cutoff_derivative_at_zero_vanishes_to_order_p():
    envelope = PolynomialCutoff(CUTOFF, 6)
    _, first, second = derivatives(envelope, torch.tensor([1e-3], dtype=torch.float64))
    assert abs(first) < 1e-10 and abs(second) < 1e-8


def test_cosine_cutoff():
    envelope = CosineCutoff(CUTOFF)
    r = torch.tensor([0.0, CUTOFF / 2, CUTOFF, CUTOFF + 1.0], dtype=torch.float64)
    torch.testing.assert_close(envelope(r), torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=torch.float64))
    value_b, first_b = derivatives(envelope, torch.tensor([CUTOFF - 1e-6], dtype=torch.float64), 1)
    value_a, first_a = derivatives(envelope, torch.tensor([CUTOFF + 1e-6], dtype=torch.float64), 1)
    assert abs(value_b) < 1e-11 and abs(first_b) < 1e-5
    assert value_a == 0 and first_a == 0


def test_bessel_basis():
    # built in float64: a float32-built basis holds π rounded to float32
    torch.set_default_dtype(torch.float64)  # restored by the autouse fixture
    basis = BesselBasis(CUTOFF, num_basis=5)
    r = torch.tensor([0.3, 1.7, 3.9], dtype=torch.float64)
    out = basis(r)
    assert out.shape == (3, 5)
    n = torch.arange(1, 6, dtype=torch.float64)
    expected = math.sqrt(2 / CUTOFF) * torch.sin(n * math.pi * r[:, None] / CUTOFF) / r[:, None]
    torch.testing.assert_close(out, expected)
    # every function vanishes at the cutoff
    assert basis(torch.tensor([CUTOFF], dtype=torch.float64)).abs().max() < 1e-12
    assert not any(p.requires_grad for p in basis.parameters())
    assert BesselBasis(CUTOFF, 5, trainable=True).frequencies.requires_grad


def test_gaussian_basis():
    basis = GaussianBasis(CUTOFF, num_basis=9).double()
    assert basis.centers[0] == 0.0 and basis.centers[-1] == CUTOFF
    out = basis(basis.centers)
    assert out.shape == (9, 9)
    torch.testing.assert_close(out.diagonal(), torch.ones(9, dtype=torch.float64))
    width = CUTOFF / 8
    neighbour = math.exp(-0.5)  # one width from the centre
    torch.testing.assert_close(out.diagonal(1), torch.full((8,), neighbour, dtype=torch.float64))
    assert abs(width - (basis.centers[1] - basis.centers[0]).item()) < 1e-12


def test_radial_basis_by_name():
    assert isinstance(radial_basis("bessel", CUTOFF, 4), BesselBasis)
    assert isinstance(radial_basis("gaussian", CUTOFF, 4), GaussianBasis)
    with pytest.raises(ValueError, match="bessel"):
        radial_basis("chebyshev", CUTOFF, 4)
