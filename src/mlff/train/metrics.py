"""Error metrics accumulated over batches: MAE and RMSE of energies, forces and stress.

Units of the results: energies in meV per structure and meV/atom, forces in meV/Å,
stress in meV/Å³.
"""

from __future__ import annotations

import math

import torch

from mlff.data import keys as K


class ErrorAccumulator:
    """Sum absolute and squared errors over batches, then report MAE/RMSE."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def _add(self, name: str, errors: torch.Tensor) -> None:
        errors = errors.detach().double()
        if errors.numel() == 0:
            return
        entry = self.sums.setdefault(name, [0.0, 0.0, 0])
        entry[0] += float(errors.abs().sum())
        entry[1] += float((errors**2).sum())
        entry[2] += errors.numel()

    def update(self, pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        """Add the errors of one batch (only labels that are present count)."""
        has_energy = batch[K.HAS_ENERGY]
        if K.ENERGY in pred and bool(has_energy.any()):
            diff = (pred[K.ENERGY] - batch[K.ENERGY])[has_energy]
            self._add("energy", diff)
            self._add("energy_per_atom", diff / batch[K.NUM_ATOMS][has_energy])
        has_forces = batch[K.HAS_FORCES][batch[K.BATCH]]
        if K.FORCES in pred and bool(has_forces.any()):
            self._add("forces", (pred[K.FORCES] - batch[K.FORCES])[has_forces])
        has_stress = batch[K.HAS_STRESS]
        if K.STRESS in pred and bool(has_stress.any()):
            self._add("stress", (pred[K.STRESS] - batch[K.STRESS])[has_stress])

    def compute(self) -> dict[str, float]:
        """``{name}_mae`` and ``{name}_rmse`` in meV units, and ``{name}_count``."""
        out: dict[str, float] = {}
        for name, (abs_sum, sq_sum, count) in self.sums.items():
            out[f"{name}_mae"] = 1e3 * abs_sum / count
            out[f"{name}_rmse"] = 1e3 * math.sqrt(sq_sum / count)
            out[f"{name}_count"] = count
        return out
