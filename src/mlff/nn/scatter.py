"""Scatter (segment) sums on ``index_add``: deterministic on the CPU, scriptable."""

from __future__ import annotations

import torch


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum the rows of ``src`` into ``dim_size`` bins along dim 0.

    Args:
        src: (E, ...) values.
        index: (E,) int64 bin of each row.
        dim_size: number of bins.

    Returns:
        (dim_size, ...) sums; empty bins are zero.
    """
    out = torch.zeros((dim_size,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


def gather(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``src[index]`` for an int64 index of any shape, as ``index_select``.

    The same values as indexing, but its backward is an ``index_add`` instead of an
    accumulating ``index_put``, which on the CPU is several times slower.

    Args:
        src: (N, ...) rows.
        index: (...) int64 row numbers.

    Returns:
        index.shape + src.shape[1:].
    """
    # the Tensor method, not torch.index_select: torch_geometric (imported by sevenn)
    # replaces that function with Python that TorchScript cannot compile
    rows = src.index_select(0, index.reshape(-1))
    return rows.reshape(index.shape + src.shape[1:])
