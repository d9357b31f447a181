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
