"""Random train/validation/test splits, and the index files that name them.

An index file holds one 0-based structure index per line; ``data.train_indices`` and
``data.valid_indices`` of a training config read this format.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mlff.errors import ConfigError


def random_split(
    size: int, valid_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Split ``range(size)`` at random into sorted train, validation and test indices.

    ``max(1, round(valid_fraction * size))`` structures go to validation and, when
    ``test_fraction > 0``, ``max(1, round(test_fraction * size))`` to test. With no test
    fraction the split equals the one training makes with ``data.valid_fraction`` and
    ``seed``.

    Raises:
        ConfigError: a fraction outside [0, 1), or nothing left for training.
    """
    if not 0 < valid_fraction < 1:
        raise ConfigError(f"the validation fraction must be in (0, 1), got {valid_fraction}.")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"the test fraction must be in [0, 1), got {test_fraction}.")
    num_valid = max(1, round(valid_fraction * size))
    num_test = max(1, round(test_fraction * size)) if test_fraction > 0 else 0
    if num_valid + num_test >= size:
        raise ConfigError(
            f"{size} structures cannot be split into {num_valid} for validation, {num_test} for "
            "test and at least one for training; use smaller fractions or more data."
        )
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    valid = sorted(order[:num_valid])
    test = sorted(order[num_valid:num_valid + num_test])
    train = sorted(order[num_valid + num_test:])
    return train, valid, test


def write_indices(path: str | Path, indices: list[int]) -> Path:
    """Write one index per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in indices))
    return path
