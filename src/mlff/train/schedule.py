"""Learning-rate schedules with a linear warm-up, resumable from their state dict."""

from __future__ import annotations

import math

import torch

from mlff.train.config import SchedulerConfig


class LRSchedule:
    """Set the optimizer's learning rate once per epoch.

    ``plateau`` multiplies the rate by ``factor`` after ``patience`` epochs without a
    better validation loss; ``cosine`` anneals from the base rate to ``min_lr`` over
    ``max_epochs`` or, when the time budget ends the run first, over that budget
    (whichever is further along); ``constant`` keeps it. All follow ``warmup_epochs`` of
    linear warm-up.

    Args:
        budget_seconds: the run's time budget (``training.max_minutes`` x 60, on the clock
            of ``training.budget_clock``), or infinite.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: SchedulerConfig, base_lr: float,
        max_epochs: int, budget_seconds: float = math.inf,
    ) -> None:
        self.optimizer = optimizer
        self.config = config
        self.base_lr = base_lr
        self.max_epochs = max_epochs
        self.budget_seconds = budget_seconds
        self.scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0
        self.warmup_seconds: float | None = None  # training time when the warm-up ended

    def progress(self, epoch: int, elapsed: float = 0.0) -> float:
        """How far past the warm-up the run is, in [0, 1]: by epochs or by the time budget
        (``elapsed`` seconds of training so far), whichever is further. The budget left
        after the warm-up is counted from when :meth:`start_epoch` began the first epoch
        past it (from ``elapsed`` before then)."""
        c = self.config
        span = max(self.max_epochs - c.warmup_epochs, 1)
        by_epochs = (epoch - c.warmup_epochs) / span
        by_time = 0.0
        if math.isfinite(self.budget_seconds):
            warmup_end = elapsed if self.warmup_seconds is None else self.warmup_seconds
            left = self.budget_seconds - warmup_end
            by_time = (elapsed - warmup_end) / left if left > 0 else 1.0
        return min(max(by_epochs, by_time, 0.0), 1.0)

    def lr(self, epoch: int, elapsed: float = 0.0) -> float:
        """Learning rate of ``epoch`` (0-based), started after ``elapsed`` seconds of training."""
        c = self.config
        if epoch < c.warmup_epochs:
            return self.base_lr * (epoch + 1) / (c.warmup_epochs + 1)
        if c.name == "cosine":
            progress = self.progress(epoch, elapsed)
            return c.min_lr + 0.5 * (self.base_lr - c.min_lr) * (1 + math.cos(math.pi * progress))
        return max(self.base_lr * self.scale, c.min_lr)

    def start_epoch(self, epoch: int, elapsed: float = 0.0) -> float:
        """Apply the rate of ``epoch`` (started after ``elapsed`` seconds) and return it;
        with a time budget, the first epoch past the warm-up records when it ended."""
        if (math.isfinite(self.budget_seconds) and epoch >= self.config.warmup_epochs
                and self.warmup_seconds is None):
            self.warmup_seconds = elapsed
        lr = self.lr(epoch, elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def end_epoch(self, epoch: int, valid_loss: float) -> None:
        """Record the validation loss of ``epoch`` (drives the plateau schedule)."""
        if valid_loss < self.best * (1 - 1e-4):
            self.best = valid_loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.config.name == "plateau" and epoch >= self.config.warmup_epochs:
            if self.bad_epochs > self.config.patience:
                self.scale *= self.config.factor
                self.bad_epochs = 0

    def state_dict(self) -> dict:
        """Resumable state."""
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs,
                "warmup_seconds": self.warmup_seconds}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.scale, self.best, self.bad_epochs = state["scale"], state["best"], state["bad_epochs"]
        self.warmup_seconds = state.get("warmup_seconds")
