"""The best validation loss so far, and early stopping when it stops improving."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlff.train.callback import Callback

if TYPE_CHECKING:
    from mlff.train.trainer import Trainer

# a validation loss counts as better only when it is lower by this fraction
MIN_RELATIVE_IMPROVEMENT = 1e-6
_STATE = ("best_valid_loss", "best_epoch", "epochs_since_best", "best_valid_metrics")


class EarlyStop(Callback):
    """Tracks the best epoch (whose weights ``best.ckpt`` keeps) and stops the run after
    ``training.early_stopping_patience`` epochs without a better validation loss; in stage
    one of a run with ``stage_two``, stage two starts instead."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best_valid_loss = math.inf
        self.best_epoch = -1  # 0-based; -1: none yet
        self.epochs_since_best = 0
        self.best_valid_metrics: dict[str, float] = {}

    def restart(self) -> None:
        """Forget the best loss and the patience count (stage two starts afresh)."""
        self.best_valid_loss = math.inf
        self.epochs_since_best = 0

    def epoch_start(self, trainer: Trainer, budget: float) -> str | None:
        """``"early_stopping"`` when patience has run out (unless stage two starts now)."""
        if self.patience is None or self.epochs_since_best < self.patience:
            return None
        if not trainer.stage_two.pending:
            return "early_stopping"
        trainer.stage_two.enter(trainer, "early stopping in stage one")
        return None

    def epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Compare the epoch's validation loss with the best; sets ``record["best"]``."""
        valid = record["valid"]
        improved = valid["loss"] < self.best_valid_loss * (1 - MIN_RELATIVE_IMPROVEMENT)
        if improved:
            self.best_valid_loss = valid["loss"]
            self.best_epoch = trainer.epoch - 1
            self.epochs_since_best = 0
            self.best_valid_metrics = valid
        else:
            self.epochs_since_best += 1
        record["best"] = improved

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint entries of the best epoch and the patience count."""
        return {name: getattr(self, name) for name in _STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore them from a checkpoint."""
        for name in _STATE:
            setattr(self, name, state[name])
