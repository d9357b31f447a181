"""Error metrics accumulated over batches: MAE and RMSE of energies, forces and stress.

The names are those of :mod:`mlff.validate.errors` (``mlff evaluate``), so the training
log, the model file and the evaluation report agree: ``energy_mae_meV``,
``energy_mae_meV_per_atom``, ``forces_mae_meV_per_A``, ``stress_mae_meV_per_A3`` and the
matching ``_rmse_`` names, with counts ``num_energy``, ``num_force_components``,
``num_stress``.
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

    def reduce(self, context) -> None:
        """Sum the accumulated errors over all processes of a distributed run."""
        from mlff.train.distributed import all_reduce_sum

        flat = torch.tensor([v for name in _NAMES for v in self.sums.get(name, [0.0, 0.0, 0])],
                            dtype=torch.float64)
        flat = all_reduce_sum(flat, context).view(len(_NAMES), 3).tolist()
        self.sums = {name: [a, b, int(c)] for name, (a, b, c) in zip(_NAMES, flat) if c > 0}

    def compute(self) -> dict[str, float]:
        """MAE and RMSE in meV units, and the counts (see the module docstring)."""
        out: dict[str, float] = {}
        for name, (abs_sum, sq_sum, count) in self.sums.items():
            quantity, unit, count_name, values_per_item = _NAMES[name]
            out[f"{quantity}_mae_{unit}"] = 1e3 * abs_sum / count
            out[f"{quantity}_rmse_{unit}"] = 1e3 * math.sqrt(sq_sum / count)
            if count_name:
                out[count_name] = count // values_per_item
        return out


# accumulator name -> (quantity, unit suffix, count name, values per counted item)
_NAMES = {
    "energy": ("energy", "meV", "num_energy", 1),
    "energy_per_atom": ("energy", "meV_per_atom", None, 1),
    "forces": ("forces", "meV_per_A", "num_force_components", 1),
    "stress": ("stress", "meV_per_A3", "num_stress", 9),  # 9 components per structure
}
