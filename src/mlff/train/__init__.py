"""Training: config schema, loss, metrics, EMA, schedules, checkpoints and the trainer."""

from mlff.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
