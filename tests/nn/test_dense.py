"""The dense neighbour layout and the dense "uvu" neighbour sum against e3nn + scatter_sum."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from mlff.nn import scatter_sum
from mlff.nn.dense import DenseUVUSum, dense_slots, to_dense, worth_padding
from mlff.nn.dtype import default_dtype


def uvu_product(irreps_in: str, irreps_sh: str, targets: str) -> o3.TensorProduct:
    """A weighted channel-wise product as MACE and NequIP build theirs."""
    irreps_in, irreps_sh, targets = o3.Irreps(irreps_in), o3.Irreps(irreps_sh), o3.Irreps(targets)
    paths, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in targets:
                    instructions.append((i, j, len(paths), "uvu", True))
                    paths.append((mul, ir_out))
    return o3.TensorProduct(irreps_in, irreps_sh, o3.Irreps(paths), instructions,
                            shared_weights=False, internal_weights=False)


def test_slots_place_every_edge_once_in_its_receivers_row():
    receiver = torch.tensor([2, 0, 2, 2, 1, 0, 4])
    slots, width = dense_slots(receiver, 5)
    assert width == 3
    assert sorted(slots.tolist()) == sorted(set(slots.tolist()))  # no two edges share a slot
    assert torch.equal(slots // width, receiver)
    dense = to_dense(torch.arange(1, 8, dtype=torch.float64), slots, 5, width)
    assert dense.shape == (5, 3)
    assert dense[3].abs().sum() == 0  # atom 3 receives nothing
    assert sorted(dense[2][dense[2] > 0].tolist()) == [1.0, 3.0, 4.0]


def test_no_edges_gives_width_one():
    slots, width = dense_slots(torch.zeros(0, dtype=torch.int64), 3)
    assert width == 1 and slots.numel() == 0


def test_padding_is_refused_when_most_slots_would_be_empty():
    assert worth_padding(num_edges=100, num_nodes=10, width=12)
    assert not worth_padding(num_edges=100, num_nodes=100, width=50)


@pytest.mark.parametrize("irreps_in, irreps_sh, targets", [
    ("6x0e", "0e+1o+2e+3o", "0e+1o+2e+3o"),                 # MACE, scalar features
    ("4x0e+4x1o+4x2e", "0e+1o+2e+3o", "0e+1o+2e+3o"),       # MACE, max_L 2
    ("5x0e+5x0o+5x1o+5x1e", "0e+1o", "0e+0o+1o+1e"),        # NequIP, l_max 1
    ("3x0e+3x1o+3x2e", "0e+1o+2e", "0e+1o+2e"),             # NequIP, l_max 2, no parity
])
def test_dense_sum_equals_tensor_product_then_scatter(irreps_in, irreps_sh, targets):
    generator = torch.Generator().manual_seed(0)
    with default_dtype(torch.float64):
        tp = uvu_product(irreps_in, irreps_sh, targets)
        dense_sum = DenseUVUSum(tp)
    nodes, edges = 23, 150
    x = torch.randn(nodes, tp.irreps_in1.dim, dtype=torch.float64, generator=generator)
    sender = torch.randint(0, nodes, (edges,), generator=generator)
    receiver = torch.randint(0, nodes - 2, (edges,), generator=generator)  # two atoms get none
    y = torch.randn(edges, tp.irreps_in2.dim, dtype=torch.float64, generator=generator)
    w = torch.randn(edges, tp.weight_numel, dtype=torch.float64, generator=generator)
    for tensor in (x, y, w):
        tensor.requires_grad_(True)
    reference = scatter_sum(tp(x[sender], y, w), receiver, nodes)

    slots, width = dense_slots(receiver, nodes)
    dense_w = to_dense(w, slots, nodes, width)
    out = dense_sum(x, to_dense(sender, slots, nodes, width), to_dense(y, slots, nodes, width),
                    [dense_w[..., a:b] for a, b in dense_sum.weight_ranges()])
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    # and the gradients, which give the forces
    probe = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    grads = torch.autograd.grad((out * probe).sum(), [x, y, w])
    expected = torch.autograd.grad((reference * probe).sum(), [x, y, w])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_other_connection_modes_are_refused():
    tp = o3.FullyConnectedTensorProduct("2x0e+2x1o", "0e+1o", "2x0e+2x1o", shared_weights=False)
    with pytest.raises(ValueError, match="uvu"):
        DenseUVUSum(tp)
