"""cuEquivariance backend: the same neighbour sums as e3nn, and the models' results unchanged.

Runs cuEquivariance's PyTorch implementation on the CPU (``MLFF_CUEQ=1``); on a machine
with a GPU the CUDA test runs its kernels too. Skipped when cuequivariance_torch is not
installed.
"""

from __future__ import annotations

import pytest
import torch

from mlff.nn import scatter_sum
from mlff.nn.cueq import CueqUVUSum, installed
from mlff.nn.dtype import default_dtype
from tests import helpers
from tests.nn.test_dense import uvu_product

pytestmark = pytest.mark.skipif(not installed(), reason="cuequivariance_torch not installed")

PRODUCTS = [
    ("6x0e", "0e+1o+2e+3o", "0e+1o+2e+3o"),
    ("4x0e+4x1o", "0e+1o+2e+3o", "0e+1o+2e+3o"),
    ("5x0e+5x0o+5x1o+5x1e", "0e+1o", "0e+0o+1o+1e"),
]


def random_inputs(tp, device="cpu"):
    generator = torch.Generator().manual_seed(0)
    nodes, edges = 19, 120
    x = torch.randn(nodes, tp.irreps_in1.dim, dtype=torch.float64, generator=generator)
    sender = torch.randint(0, nodes, (edges,), generator=generator)
    receiver = torch.randint(0, nodes, (edges,), generator=generator)
    y = torch.randn(edges, tp.irreps_in2.dim, dtype=torch.float64, generator=generator)
    w = torch.randn(edges, tp.weight_numel, dtype=torch.float64, generator=generator)
    return [t.to(device) for t in (x, sender, receiver, y, w)]


@pytest.mark.parametrize("irreps_in, irreps_sh, targets", PRODUCTS)
def test_cueq_sum_equals_e3nn(irreps_in, irreps_sh, targets):
    with default_dtype(torch.float64):
        tp = uvu_product(irreps_in, irreps_sh, targets)
    x, sender, receiver, y, w = random_inputs(tp)
    x.requires_grad_(True)
    y.requires_grad_(True)
    reference = scatter_sum(tp(x[sender], y, w), receiver, x.shape[0])
    out = CueqUVUSum(tp)(x, sender, receiver, y, w)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-10)
    grads = torch.autograd.grad(out.square().sum(), [x, y])
    expected = torch.autograd.grad(reference.square().sum(), [x, y])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("architecture", ["mace", "nequip"])
def test_models_on_cueq_equal_the_reference(architecture, monkeypatch):
    potential = helpers.build_potential(architecture)
    graph = helpers.graph_of(helpers.copper().repeat((2, 2, 1)), potential.cutoff)
    reference = potential(graph, compute_forces=True, compute_stress=True)
    monkeypatch.setenv("MLFF_CUEQ", "1")
    out = potential(graph, compute_forces=True, compute_stress=True)
    assert any("_cueq_sums" in module.__dict__ for module in potential.modules())
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(out[key], reference[key], rtol=0, atol=1e-10)
    # the backend leaves the model file alone
    assert not any("cueq" in key for key in potential.state_dict())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("irreps_in, irreps_sh, targets", PRODUCTS)
def test_cueq_kernels_on_cuda(irreps_in, irreps_sh, targets):
    with default_dtype(torch.float64):
        tp = uvu_product(irreps_in, irreps_sh, targets)
    x, sender, receiver, y, w = random_inputs(tp, "cuda")
    reference = scatter_sum(tp.to("cuda")(x[sender], y, w), receiver, x.shape[0])
    out = CueqUVUSum(tp, "cuda")(x, sender, receiver, y, w)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-9)
