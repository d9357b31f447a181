"""The end of a run: the best weights evaluated on the test set and saved as the model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlff.data.example import example_record
from mlff.models.io import save_model
from mlff.train.checkpoint import load_checkpoint
from mlff.train.evaluate import evaluate
from mlff.train.finetune import finetune_record

if TYPE_CHECKING:
    from mlff.train.trainer import Trainer


@dataclass
class TrainResult:
    """What a finished training run produced."""

    out_dir: Path
    model_path: Path
    epochs: int
    best_epoch: int
    best_valid_loss: float
    stop_reason: str
    wall_seconds: float
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float] | None


def finish(trainer: Trainer, stop_reason: str) -> TrainResult:
    """Write ``model.mlff`` (the weights of ``best.ckpt``, with the training record and
    test metrics) and ``metrics.json``; on the main process only."""
    run, best = trainer.run, trainer.early_stop
    out_dir, data, config = run.out_dir, run.data, trainer.config
    result = TrainResult(out_dir, out_dir / "model.mlff", trainer.epoch, best.best_epoch + 1,
                         best.best_valid_loss, stop_reason, trainer.elapsed,
                         best.best_valid_metrics, None)
    if not run.context.is_main:  # the main process evaluates the test set and writes
        return result
    final = trainer.averages.evaluation_model
    final.load_state_dict(load_checkpoint(out_dir / "best.ckpt")["model"])
    final.eval()
    if data.test is not None:
        result.test_metrics = evaluate(final, data.test, config.training.valid_batch_size,
                                       None, trainer.compute_stress)
    final.metadata = {
        "data_fingerprint": data.fingerprints,
        "test_metrics": result.test_metrics or {},
        "training": {
            "epochs": trainer.epoch,
            "best_epoch": best.best_epoch + 1,
            "stop_reason": stop_reason,
            "wall_seconds": round(trainer.elapsed, 1),
            "valid_metrics": best.best_valid_metrics,
            "num_train": len(data.train),
            "num_valid": len(data.valid),
            "finetune": finetune_record(config),
            "stage_two_start_epoch": (None if trainer.stage_two.epoch is None
                                      else trainer.stage_two.epoch + 1),
            "threads": run.threads.choice.describe(),
            "example_structure": example_record(data.train),
        },
    }
    if config.data.dispersion is not None:  # trained on labels minus D3
        final.metadata["dispersion"] = config.data.dispersion.to_metadata()
    result.model_path = save_model(final, out_dir / "model.mlff")
    (out_dir / "metrics.json").write_text(
        json.dumps({"valid": best.best_valid_metrics, "test": result.test_metrics}, indent=2))
    run.console.print(f"done ({stop_reason}) after {trainer.epoch} epochs, "
                      f"{trainer.elapsed:.0f} s; best epoch {best.best_epoch + 1}", highlight=False)
    return result
