"""Weighted loss on energy per atom, forces and stress."""

from __future__ import annotations

import torch

from mlff.data import keys as K
from mlff.train.config import LossConfig


def _error(pred: torch.Tensor, ref: torch.Tensor, config: LossConfig) -> torch.Tensor:
    if config.type == "huber":
        return torch.nn.functional.huber_loss(pred, ref, reduction="none", delta=config.huber_delta)
    return (pred - ref) ** 2


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values * weights`` over the entries where ``mask`` is set (0 if none)."""
    mask = mask.to(values.dtype)
    return (values * weights * mask).sum() / mask.sum().clamp(min=1.0)


def compute_loss(
    pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], config: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The scalar training loss and its parts.

    Terms (each a weighted mean over the structures that carry the label, multiplied by
    the structure's ``weight``): squared error of the energy per atom (eV²), of each force
    component ((eV/Å)²) and of each stress component ((eV/Å³)²).

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
        term = _weighted_mean(err, weight, batch[K.HAS_ENERGY])
        total = total + config.energy_weight * term
        parts["energy"] = float(term.detach())
    if config.forces_weight > 0:
        atom_batch = batch[K.BATCH]
        err = _error(pred[K.FORCES], batch[K.FORCES], config).mean(dim=-1)
        term = _weighted_mean(err, weight[atom_batch], batch[K.HAS_FORCES][atom_batch])
        total = total + config.forces_weight * term
        parts["forces"] = float(term.detach())
    if config.stress_weight > 0:
        err = _error(pred[K.STRESS], batch[K.STRESS], config).mean(dim=(-1, -2))
        term = _weighted_mean(err, weight, batch[K.HAS_STRESS])
        total = total + config.stress_weight * term
        parts["stress"] = float(term.detach())
    return total, parts
