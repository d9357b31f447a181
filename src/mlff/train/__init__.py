"""Training: config schema, loss, metrics, EMA, schedules, checkpoints and the trainer.

``TrainConfig`` and ``load_config`` are loaded on first use, so that importing ``mlff``
(e.g. in a labelling worker) does not import torch.
"""

__all__ = ["TrainConfig", "load_config"]


def __getattr__(name: str):
    if name in __all__:
        from mlff.train import config

        return getattr(config, name)
    raise AttributeError(f"module 'mlff.train' has no attribute {name!r}")
