"""What a part of the training loop (a callback) can hook into.

The loop (:class:`mlff.train.trainer.Trainer`) calls every callback once before and once
after each epoch, never per step: the per-step work (the EMA update) is a plain call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlff.train.trainer import Trainer


class Callback:
    """Hooks of the training loop; the defaults do nothing."""

    def epoch_start(self, trainer: Trainer, budget: float) -> str | None:
        """Before an epoch, with the time budget in seconds: a reason to stop the
        run (the result's ``stop_reason``), or None to go on."""
        return None

    def epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After an epoch (``trainer.epoch`` counts it), with its log record (epoch, stage,
        lr, time, train and valid losses, best, throughput), which it may complete."""
