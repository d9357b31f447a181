"""Stage two of a run (``training.stage_two``): when it starts and what changes then."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlff.train.callback import Callback
from mlff.train.config import ResolvedConfig
from mlff.train.finetune import learning_rate
from mlff.train.schedule import LRSchedule

if TYPE_CHECKING:
    from mlff.train.trainer import Trainer


class StageTwo(Callback):
    """Starts stage two before the epoch at which ``start_fraction`` of ``max_epochs`` (or
    of the time budget) is used, or when early stopping ends stage one."""

    def __init__(self, config: ResolvedConfig) -> None:
        self.config = config
        self.epoch: int | None = None  # the first epoch (0-based) of stage two

    @property
    def pending(self) -> bool:
        """Whether the run has a stage two that has not started yet."""
        return self.config.training.stage_two is not None and self.epoch is None

    def due(self, epoch: int, elapsed: float, budget: float) -> str | None:
        """Why stage two starts before epoch ``epoch`` (0-based) after ``elapsed`` of
        ``budget`` seconds, or ``None`` if it does not."""
        stage = self.config.training.stage_two
        if stage is None or self.epoch is not None:
            return None
        fraction = stage.start_fraction
        if epoch >= fraction * self.config.training.max_epochs:
            return f"{fraction:g} of max_epochs"
        if elapsed >= fraction * budget:
            return f"{fraction:g} of max_minutes"
        return None

    def epoch_start(self, trainer: Trainer, budget: float) -> None:
        """Start stage two when it is due."""
        reason = self.due(trainer.epoch, trainer.elapsed, budget)
        if reason is not None:
            self.enter(trainer, reason)

    def epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Record the stage of the finished epoch."""
        record["stage"] = 1 if self.epoch is None else 2

    def enter(self, trainer: Trainer, reason: str | None = None) -> None:
        """Switch to ``stage_two``'s loss weights and learning rate from the next epoch.

        The learning rate restarts at ``stage_two.lr`` (default: a tenth of the base rate)
        without warm-up, and follows the plateau rule when the scheduler is ``plateau``
        (else stays constant). The plateau and early-stopping counters and the best
        validation loss start afresh, so ``best.ckpt`` and the final model come from stage
        two. With ``swa`` the weights are averaged from here on and the average is what is
        evaluated and saved (EMA, if on, is then not used). ``reason`` is logged; ``None``
        (resuming) logs nothing.
        """
        t = self.config.training
        stage = t.stage_two
        assert stage is not None
        self.epoch = trainer.epoch
        trainer.loss_config = loss = t.stage_two_loss()
        trainer.compute_stress = loss.stress_weight > 0
        lr = stage.lr if stage.lr is not None else learning_rate(self.config) / 10
        scheduler = t.scheduler.model_copy(update={
            "warmup_epochs": 0, "name": "plateau" if t.scheduler.name == "plateau" else "constant"})
        trainer.run.schedule = LRSchedule(trainer.run.optimizer, scheduler, lr, t.max_epochs)
        if stage.swa:
            trainer.averages.start_swa()
        trainer.early_stop.restart()
        if reason is not None:
            trainer.run.console.print(
                f"stage two from epoch {trainer.epoch + 1} ({reason}): weights E "
                f"{loss.energy_weight:g} F {loss.forces_weight:g} S {loss.stress_weight:g}, "
                f"lr {lr:.1e}{', SWA' if stage.swa else ''}",
                highlight=False, soft_wrap=True,
            )
