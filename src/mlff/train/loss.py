"""Weighted loss on energy per atom, forces and stress."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlff.data import keys as K
from mlff.train.config import LossConfig


def _error(pred: torch.Tensor, ref: torch.Tensor, config: LossConfig) -> torch.Tensor:
    if config.type == "huber":
        return torch.nn.functional.huber_loss(pred, ref, reduction="none", delta=config.huber_delta)
    return (pred - ref) ** 2


def _weighted_mean(
    values: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor, count: float | None = None
) -> torch.Tensor:
    """Sum of ``values * weights`` where ``mask`` is set, over ``count`` (default: the
    number of masked entries; 0 if there are none)."""
    mask = mask.to(values.dtype)
    denominator = mask.sum().clamp(min=1.0) if count is None else max(count, 1.0)
    return (values * weights * mask).sum() / denominator


def config_type_factors(
    config_types: Sequence[str], weights: dict[str, float]
) -> torch.Tensor | None:
    """The factor on the structure weights of each integer config_type tag.

    Args:
        config_types: the name of each tag (``dataset.config_types``).
        weights: ``data.config_type_weights``; names absent from it get 1.

    Returns:
        (T,) float64 tensor indexed by tag, or ``None`` when ``weights`` is empty.
    """
    if not weights:
        return None
    factors = [float(weights.get(name, 1.0)) for name in config_types]
    return torch.tensor(factors, dtype=torch.float64)


def reweight(
    batch: dict[str, torch.Tensor], factors: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """``batch`` with each structure's ``weight`` multiplied by its config_type's factor.

    The batch dict itself is not modified; ``factors`` comes from :func:`config_type_factors`.
    """
    if factors is None:
        return batch
    weight = batch[K.WEIGHT]
    factor = factors.to(device=weight.device, dtype=weight.dtype)[batch[K.CONFIG_TYPE]]
    return {**batch, K.WEIGHT: weight * factor}


def label_counts(batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Number of labelled entries each loss term averages over: structures with an energy,
    atoms with forces, structures with a stress."""
    atom_batch = batch[K.BATCH]
    return {
        "energy": float(batch[K.HAS_ENERGY].sum()),
        "forces": float(batch[K.HAS_FORCES][atom_batch].sum()),
        "stress": float(batch[K.HAS_STRESS].sum()),
    }


def compute_loss(
    pred: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    config: LossConfig,
    counts: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The scalar training loss and its parts.

    Terms (each a weighted mean over the structures that carry the label, multiplied by
    the structure's ``weight``): squared error of the energy per atom (eV²), of each force
    component ((eV/Å)²) and of each stress component ((eV/Å³)²).

    Args:
        pred: the Potential's output for ``batch``.
        batch: the labelled graph dict.
        config: loss weights.
        counts: the denominators of the means (see :func:`label_counts`); default those of
            ``batch``. Distributed training passes the global batch's counts, so the
            shares of all processes add up to the global loss.

    Returns:
        loss: scalar tensor with gradient.
        parts: the unweighted terms, as floats, for logging.
    """
    weight = batch[K.WEIGHT]
    num_atoms = batch[K.NUM_ATOMS].to(weight.dtype)
    total = weight.new_zeros(())
    parts: dict[str, float] = {}
    if config.energy_weight > 0:
        err = _error(pred[K.ENERGY] / num_atoms, batch[K.ENERGY] / num_atoms, config)
        term = _weighted_mean(err, weight, batch[K.HAS_ENERGY], counts and counts["energy"])
        total = total + config.energy_weight * term
        parts["energy"] = float(term.detach())
    if config.forces_weight > 0:
        atom_batch = batch[K.BATCH]
        err = _error(pred[K.FORCES], batch[K.FORCES], config).mean(dim=-1)
        term = _weighted_mean(err, weight[atom_batch], batch[K.HAS_FORCES][atom_batch],
                              counts and counts["forces"])
        total = total + config.forces_weight * term
        parts["forces"] = float(term.detach())
    if config.stress_weight > 0:
        err = _error(pred[K.STRESS], batch[K.STRESS], config).mean(dim=(-1, -2))
        term = _weighted_mean(err, weight, batch[K.HAS_STRESS], counts and counts["stress"])
        total = total + config.stress_weight * term
        parts["stress"] = float(term.detach())
    return total, parts
