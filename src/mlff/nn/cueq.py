"""NVIDIA cuEquivariance kernels for the "uvu" neighbour sum, used when the package is installed.

:class:`CueqUVUSum` computes what :class:`mlff.nn.dense.DenseUVUSum` computes,
``scatter_sum(tp(x[sender], y, w), receiver, N)`` for an e3nn "uvu" tensor product ``tp``,
with ``cuequivariance_torch.ChannelWiseTensorProduct``: one fused gather, product and
scatter per call (CUDA kernels on a GPU; cuEquivariance's PyTorch implementation
elsewhere, which is how the tests check it without a GPU).

The two libraries order the product's paths and normalise them independently; the
correspondence (which cuEquivariance path is which e3nn instruction, and the constant
between them) is measured at construction from unit inputs, as for the dense sum, so the
weights and outputs stay in e3nn's layout and the model file does not depend on the
backend.

Models build these lazily, per device, outside their ``state_dict`` (see
:func:`cueq_sum_for`); ``MLFF_CUEQ=0`` turns them off, ``MLFF_CUEQ=1`` uses them on the
CPU too (slow; for tests).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os

import torch
from e3nn import o3
from torch import nn


@functools.lru_cache(maxsize=1)
def installed() -> bool:
    """Whether ``cuequivariance_torch`` can be imported."""
    return importlib.util.find_spec("cuequivariance_torch") is not None


def wanted(device: torch.device) -> bool:
    """Whether to use cuEquivariance on ``device``: installed, on CUDA (or ``MLFF_CUEQ=1``)."""
    setting = os.environ.get("MLFF_CUEQ", "auto")
    if setting == "0" or not installed():
        return False
    return setting == "1" or device.type == "cuda"


class CueqUVUSum(nn.Module):
    """The neighbour sum of an e3nn "uvu" product through cuEquivariance.

    Args:
        tp: the e3nn product (weighted "uvu" paths, multiplicity-1 second input).
        device: where the kernels run.
        method: cuEquivariance's method; default: its fastest available ("uniform_1d"
            on CUDA when the segments allow, else "naive").

    Raises:
        ValueError: the two products' paths cannot be matched one to one.
    """

    def __init__(self, tp: o3.TensorProduct, device: torch.device | str = "cpu",
                 method: str | None = None) -> None:
        super().__init__()
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        device = torch.device(device)
        if method is None and device.type != "cuda":
            method = "naive"
        targets = sorted({ir for _, ir in tp.irreps_out}, key=lambda ir: (ir.l, ir.p))
        self.product = cuet.ChannelWiseTensorProduct(
            cue.Irreps("O3", str(tp.irreps_in1)), cue.Irreps("O3", str(tp.irreps_in2)),
            [cue.O3(ir.l, ir.p) for ir in targets], layout=cue.mul_ir,
            shared_weights=False, internal_weights=False, dtype=torch.float64, method=method,
        ).to(device)
        cue_blocks = [(mul, o3.Irrep(ir.l, ir.p)) for mul, ir in self.product.irreps_out]
        cue_starts = [0]
        for mul, ir in cue_blocks:
            cue_starts.append(cue_starts[-1] + mul * ir.dim)
        if self.product.weight_numel != tp.weight_numel or len(cue_blocks) != len(tp.instructions):
            raise ValueError("cuEquivariance's channel-wise product has other paths than e3nn's")
        weight_order, blocks = self._match(tp, device, cue_blocks, cue_starts)
        if sorted(block[0] for block in blocks) != list(range(len(tp.irreps_out))):
            raise ValueError("every output irrep of the e3nn product needs exactly one path")
        # e3nn's weight columns in cuEquivariance's order (None: the same order)
        self.weight_order = None if weight_order == sorted(weight_order) else weight_order
        # per e3nn output block, in order: its cuEquivariance columns and their factor
        self.blocks = [(start, stop, factor) for _, start, stop, factor in sorted(blocks)]

    def _match(self, tp: o3.TensorProduct, device: torch.device, cue_blocks, cue_starts):
        """Pair every e3nn instruction with the cuEquivariance path giving the same output."""
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(1, tp.irreps_in1.dim, dtype=torch.float64, generator=generator)
        y = torch.randn(1, tp.irreps_in2.dim, dtype=torch.float64, generator=generator)
        tp64 = copy.deepcopy(tp).to(device="cpu", dtype=torch.float64)  # tp stays as is
        out_slices = tp.irreps_out.slices()
        # cuEquivariance: weights of path q are the mul entries after those of paths < q
        cue_weight_starts = [0]
        for mul, _ in cue_blocks:
            cue_weight_starts.append(cue_weight_starts[-1] + mul)
        cue_responses = []
        for q, (mul, ir) in enumerate(cue_blocks):
            w = torch.zeros(1, tp.weight_numel, dtype=torch.float64)
            w[0, cue_weight_starts[q]] = 1.0  # channel 0 of path q
            out = self.product(x.to(device), y.to(device), w.to(device)).cpu()
            cue_responses.append(out[0, cue_starts[q] : cue_starts[q] + ir.dim])
        weight_order: list[int] = []
        blocks: list[tuple[int, int, int, float]] = []  # per e3nn path: i_out, cue columns, factor
        used: set[int] = set()
        offset = 0
        for ins in tp.instructions:
            mul = ins.path_shape[0]
            w = torch.zeros(1, tp.weight_numel, dtype=torch.float64)
            w[0, offset] = 1.0
            offset += mul
            out_slice = out_slices[ins.i_out]
            _, ir_out = tp.irreps_out[ins.i_out]
            reference = tp64(x, y, w)[0, out_slice.start : out_slice.start + ir_out.dim]
            match = None
            for q, (cue_mul, ir) in enumerate(cue_blocks):
                response = cue_responses[q]
                if q in used or cue_mul != mul or ir != ir_out or response.abs().max() < 1e-12:
                    continue
                factor = float(reference @ response / (response @ response))
                if torch.allclose(factor * response, reference, rtol=1e-9, atol=1e-12):
                    match = (q, factor)
                    break
            if match is None:
                raise ValueError(f"no cuEquivariance path matches e3nn's instruction {ins}")
            q, factor = match
            used.add(q)
            weight_order.extend(range(cue_weight_starts[q], cue_weight_starts[q] + mul))
            blocks.append((ins.i_out, cue_starts[q], cue_starts[q + 1], factor))
        # weight_order[k]: the cue column that e3nn column k feeds
        inverse = [0] * len(weight_order)
        for e3nn_column, cue_column in enumerate(weight_order):
            inverse[cue_column] = e3nn_column
        return inverse, blocks

    def forward(self, x: torch.Tensor, sender: torch.Tensor, receiver: torch.Tensor,
                y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Neighbour sums (N, dim_out) in e3nn's layout.

        Args:
            x: (N, irreps_in1.dim) node features.
            sender, receiver: (E,) int64.
            y: (E, irreps_in2.dim) edge attributes.
            w: (E, weight_numel) per-edge weights in e3nn's order.
        """
        n = x.shape[0]
        weights = w if self.weight_order is None else w[:, self.weight_order]
        out = self.product(x, y, weights, indices_1=sender, indices_out=receiver, size_out=n)
        return torch.cat([out[:, start:stop] * factor for start, stop, factor in self.blocks],
                         dim=-1)


def cueq_sum_for(owner: nn.Module, tp: o3.TensorProduct, device: torch.device) -> CueqUVUSum:
    """``owner``'s :class:`CueqUVUSum` of ``tp`` on ``device``, built on first use.

    Kept in a plain dict attribute, not as a submodule: it holds no parameters, and the
    model's ``state_dict`` (its file) stays the same with or without cuEquivariance.
    """
    cache = owner.__dict__.setdefault("_cueq_sums", {})
    key = str(device)
    if key not in cache:
        cache[key] = CueqUVUSum(tp, device)
    return cache[key]
