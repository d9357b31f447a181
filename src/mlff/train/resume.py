"""Checkpoints of a run: ``last.ckpt`` after every epoch, ``best.ckpt`` at each better
epoch, and resuming from ``last.ckpt`` exactly where the run stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlff.errors import ConfigError
from mlff.train.callback import Callback
from mlff.train.checkpoint import save_checkpoint

if TYPE_CHECKING:
    from mlff.train.trainer import Trainer

# keys whose change does not prevent resuming (they only decide when to stop)
RESUMABLE_CHANGES = {"max_epochs", "max_minutes", "early_stopping_patience"}


class Checkpoints(Callback):
    """Writes the checkpoints (main process only) and restores a run from one."""

    def epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Write ``best.ckpt`` when the epoch was the best so far, and ``last.ckpt``."""
        if not trainer.run.context.is_main:
            return
        out_dir = trainer.run.out_dir
        if record["best"]:
            save_checkpoint({"epoch": trainer.epoch, "config": trainer.config.model_dump(),
                             "model": trainer.averages.evaluation_model.state_dict(),
                             "valid_metrics": trainer.early_stop.best_valid_metrics},
                            out_dir / "best.ckpt")
        save_checkpoint(self.state_dict(trainer), out_dir / "last.ckpt")

    @staticmethod
    def state_dict(trainer: Trainer) -> dict[str, Any]:
        """Everything needed to continue ``trainer``'s run exactly."""
        run, averages = trainer.run, trainer.averages.state_dict()
        return {"epoch": trainer.epoch, "config": trainer.config.model_dump(),
                "model": run.potential.state_dict(), "ema": averages["ema"],
                "optimizer": run.optimizer.state_dict(), "schedule": run.schedule.state_dict(),
                **trainer.early_stop.state_dict(), "elapsed": trainer.elapsed,
                "torch_rng": torch.get_rng_state(), "stage_two_epoch": trainer.stage_two.epoch,
                "swa": averages["swa"], "hyperparameters": run.potential.hyperparameters}

    @staticmethod
    def load_state_dict(trainer: Trainer, state: dict[str, Any], source: Path) -> None:
        """Continue ``trainer`` from a checkpoint of the same run.

        Raises:
            ConfigError: the config differs from the checkpoint's (naming the keys) in
                more than when to stop.
        """
        differences = _differences(state["config"], trainer.config.model_dump())
        if differences:
            raise ConfigError(
                f"{source}: cannot resume, the config differs from the checkpoint's in "
                f"{', '.join(differences)}. Start a new run in another folder, or restore "
                "those keys."
            )
        trainer.epoch = state["epoch"]
        if state.get("stage_two_epoch") is not None:  # absent from older checkpoints
            trainer.stage_two.enter(trainer)
            trainer.stage_two.epoch = state["stage_two_epoch"]
        trainer.run.potential.load_state_dict(state["model"])
        trainer.averages.load_state_dict(state)
        trainer.run.optimizer.load_state_dict(state["optimizer"])
        trainer.run.schedule.load_state_dict(state["schedule"])
        trainer.early_stop.load_state_dict(state)
        trainer.elapsed = state["elapsed"]
        torch.set_rng_state(state["torch_rng"])


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if key not in saved and b in (None, {}, []):
            continue  # a key added to mlff after the checkpoint, left off (null or empty)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b and key not in RESUMABLE_CHANGES:
            found.append(f"{prefix}{key}")
    return found


def truncate_log(path: Path, epochs: int) -> None:
    """Drop log lines of epochs after the checkpoint (a kill can leave one behind)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["epoch"] <= epochs]
    path.write_text("".join(line + "\n" for line in kept))
