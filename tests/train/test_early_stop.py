"""EarlyStop: the best epoch, the patience, and stage two instead of stopping."""

import math

from mlff.train.config import validate_config
from mlff.train.early_stop import MIN_RELATIVE_IMPROVEMENT
from mlff.train.trainer import Trainer

from .conftest import small_config


def _end(trainer, loss):
    trainer.epoch += 1
    record = {"valid": {"loss": loss}}
    trainer.early_stop.epoch_end(trainer, record)
    return record["best"]


def test_patience_stops_or_starts_stage_two(ethanol_small, tmp_path):
    config = validate_config(small_config(ethanol_small, early_stopping_patience=2,
                                          stage_two={"start_fraction": 0.9}))
    trainer = Trainer(config, tmp_path, progress=False)
    stop = trainer.early_stop
    assert _end(trainer, 1.0) and stop.best_epoch == 0
    assert not _end(trainer, 1.0 * (1 - MIN_RELATIVE_IMPROVEMENT / 2))  # not better enough
    assert _end(trainer, 0.5) and stop.best_epoch == 2 and stop.best_valid_loss == 0.5
    assert not _end(trainer, 0.6) and not _end(trainer, 0.7)
    assert stop.epochs_since_best == 2
    state = stop.state_dict()
    # patience is up in stage one: stage two starts, with a fresh best and count
    assert stop.epoch_start(trainer, math.inf) is None and trainer.stage_two_epoch == 5
    assert stop.best_valid_loss == math.inf and stop.epochs_since_best == 0
    assert not trainer.stage_two.pending
    assert _end(trainer, 0.9) and not _end(trainer, 0.9) and not _end(trainer, 0.9)
    assert stop.epoch_start(trainer, math.inf) == "early_stopping"  # in stage two: stop
    stop.load_state_dict(state)
    assert stop.best_valid_loss == 0.5 and stop.best_epoch == 2 and stop.epochs_since_best == 2
