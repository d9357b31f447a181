"""Learning-rate schedules with a linear warm-up, resumable from their state dict."""

from __future__ import annotations

import math

import torch

from mlff.train.config import SchedulerConfig


class LRSchedule:
    """Set the optimizer's learning rate once per epoch.

    ``plateau`` multiplies the rate by ``factor`` after ``patience`` epochs without a
    better validation loss; ``cosine`` anneals from the base rate to ``min_lr`` over
    ``max_epochs``; ``constant`` keeps it. All follow ``warmup_epochs`` of linear warm-up.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: SchedulerConfig, base_lr: float, max_epochs: int
    ) -> None:
        self.optimizer = optimizer
        self.config = config
        self.base_lr = base_lr
        self.max_epochs = max_epochs
        self.scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0

    def lr(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based)."""
        c = self.config
        if epoch < c.warmup_epochs:
            return self.base_lr * (epoch + 1) / (c.warmup_epochs + 1)
        if c.name == "cosine":
            span = max(self.max_epochs - c.warmup_epochs, 1)
            progress = min((epoch - c.warmup_epochs) / span, 1.0)
            return c.min_lr + 0.5 * (self.base_lr - c.min_lr) * (1 + math.cos(math.pi * progress))
        return max(self.base_lr * self.scale, c.min_lr)

    def start_epoch(self, epoch: int) -> float:
        """Apply the rate of ``epoch`` to the optimizer and return it."""
        lr = self.lr(epoch)
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
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.scale, self.best, self.bad_epochs = state["scale"], state["best"], state["bad_epochs"]
