"""scatter_sum against an obviously correct loop."""

from __future__ import annotations

import pytest
import torch

from mlff.nn import scatter_sum


def slow_scatter_sum(src, index, dim_size):
    out = [torch.zeros(src.shape[1:], dtype=src.dtype) for _ in range(dim_size)]
    for row, bin_ in zip(src, index.tolist()):
        out[bin_] = out[bin_] + row
    return torch.stack(out)


@pytest.mark.parametrize("trailing", [(), (3,), (3, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_rows, dim_size", [(0, 3), (1, 1), (17, 5), (40, 12)])
def test_matches_loop(trailing, dtype, num_rows, dim_size):
    generator = torch.Generator().manual_seed(num_rows * 31 + dim_size)
    src = torch.randn((num_rows, *trailing), dtype=dtype, generator=generator)
    # leave the last bin empty on purpose
    index = torch.randint(0, max(dim_size - 1, 1), (num_rows,), generator=generator)
    out = scatter_sum(src, index, dim_size)
    assert out.shape == (dim_size, *trailing) and out.dtype == dtype
    torch.testing.assert_close(out, slow_scatter_sum(src, index, dim_size))
    if dim_size > 1:
        assert out[-1].abs().max() == 0


def test_gradient_is_a_gather():
    src = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 2, 2, 1, 0, 3, 3, 3, 1, 0])
    weights = torch.randn(4, 3, dtype=torch.float64)
    (scatter_sum(src, index, 4) * weights).sum().backward()
    torch.testing.assert_close(src.grad, weights[index])


def test_does_not_modify_input():
    src = torch.ones(4, 2)
    scatter_sum(src, torch.tensor([0, 0, 1, 1]), 2)
    assert torch.equal(src, torch.ones(4, 2))


@pytest.mark.parametrize("index_shape", [(7,), (3, 4), (0,)])
def test_gather_is_indexing_with_the_same_gradient(index_shape):
    from mlff.nn import gather

    generator = torch.Generator().manual_seed(1)
    src = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    index = torch.randint(0, 5, index_shape, generator=generator)
    out = gather(src, index)
    assert torch.equal(out, src[index])
    probe = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    (grad,) = torch.autograd.grad((out * probe).sum(), [src])
    (expected,) = torch.autograd.grad((src[index] * probe).sum(), [src])
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-14)
