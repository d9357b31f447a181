"""The training loop; its parts are callbacks, its setup :func:`mlff.train.run.build_run`.

Output folder layout (``out_dir``):
    config.yaml   the full resolved config
    log.jsonl     one JSON object per epoch (losses, metrics, learning rate, time)
    last.ckpt     everything needed to resume, written after every epoch
    best.ckpt     the weights (EMA when on) with the lowest validation loss so far (in stage
                  two: so far in stage two, SWA weights with stage_two.swa)
    model.mlff    the best model, written at the end, with test metrics when a test set is given
    metrics.json  final validation and test metrics

The parts: :mod:`~mlff.train.averages` (EMA/SWA), :mod:`~mlff.train.stage_two`,
:mod:`~mlff.train.early_stop`, :mod:`~mlff.train.resume` (checkpoints),
:mod:`~mlff.train.logs` (JSONL and console), :mod:`~mlff.train.finish` (the model file).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from mlff.data import keys as K
from mlff.data.graph import to_device
from mlff.errors import ConfigError, MLFFError
from mlff.interface import argument
from mlff.models.potential import Potential
from mlff.models.precision import torch_dtype
from mlff.train.anchor import anchor_from_config
from mlff.train.averages import Averages
from mlff.train.callback import Callback
from mlff.train.checkpoint import load_checkpoint
from mlff.train.config import TrainConfig, load_config, validate_config
from mlff.train.distributed import (
    DistributedContext,
    all_reduce_max,
    all_reduce_sum,
    init_distributed,
    shutdown,
)
from mlff.train.early_stop import EarlyStop
from mlff.train.evaluate import evaluate
from mlff.train.finetune import grown_entries, resolve_config
from mlff.train.finish import TrainResult, finish
from mlff.train.guards import check_anchor_effect, check_first_epoch
from mlff.train.logs import ConsoleLog, JsonlLog
from mlff.train.loss import compute_loss, reweight
from mlff.train.resume import Checkpoints, truncate_log
from mlff.train.run import build_run
from mlff.train.stage_two import StageTwo
from mlff.train.steps import epoch_batches
from mlff.train.summary import training_summary

__all__ = ["Trainer", "TrainingDiverged", "TrainResult", "evaluate", "train"]


class TrainingDiverged(MLFFError):
    """The loss became NaN or infinite."""


class Trainer:
    """One training run; :meth:`fit` runs it to the end (or resumes it)."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: Path,
        progress: bool = True,
        context: DistributedContext | None = None,
        avg_num_neighbors: float | None = None,
    ) -> None:
        """Set the run up (:func:`~mlff.train.run.build_run`) and its callbacks.

        ``avg_num_neighbors``: the value a resumed run stored, for a model whose
        ``avg_num_neighbors`` the config leaves ``null`` (default: from the training data).
        """
        self.run = run = build_run(config, out_dir, progress, context, avg_num_neighbors)
        self.config, self.out_dir, self.context = run.config, run.out_dir, run.context
        self.console, self.data, self.potential = run.console, run.data, run.potential
        self.optimizer, self.train_factors = run.optimizer, run.train_factors
        self.device, self.dtype = run.context.device, torch_dtype(run.config.dtype)
        self.loss_config = run.config.training.loss  # the loss of the current stage
        self.compute_stress = self.loss_config.stress_weight > 0
        self.epoch, self.elapsed, self.last_epoch_seconds = 0, 0.0, 0.0
        self.throughput: dict[str, float] = {}
        self.last_train_parts: dict[str, float] | None = None
        # L2-SP: the weights as fine-tuning starts (before a resumed state is loaded)
        finetune = run.config.finetune
        self.anchor = anchor_from_config(run.potential, finetune.anchor if finetune else None,
                                         grown_entries(run.potential))
        self.averages = Averages(run.potential, run.ema)
        self.stage_two = StageTwo(run.config)
        self.early_stop = EarlyStop(run.config.training.early_stopping_patience)
        # in this order: the stage, then whether the epoch is the best, then the files
        self.callbacks: list[Callback] = [self.stage_two, self.early_stop, Checkpoints(),
                                          JsonlLog(run.out_dir / "log.jsonl", run.context.is_main)]

    @property
    def evaluation_model(self) -> Potential:
        """The weights validated and saved (:attr:`Averages.evaluation_model`)."""
        return self.averages.evaluation_model

    @property
    def stage_two_epoch(self) -> int | None:
        """The first epoch (0-based) of stage two; None before it."""
        return self.stage_two.epoch

    def _stage_two_due(self, budget_seconds: float) -> str | None:
        return self.stage_two.due(self.epoch, self.elapsed, budget_seconds)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (``last.ckpt``)."""
        return Checkpoints.state_dict(self)

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint of the same run."""
        Checkpoints.load_state_dict(self, state, source)

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set; returns the mean loss parts."""
        run, grad_clip = self.run, self.config.training.grad_clip
        self.potential.train()
        ema_update = self.averages.step_update()
        totals: dict[str, float] = {}
        num_batches = num_structures = 0
        epoch_start = time.perf_counter()
        load_seconds, load_start = 0.0, epoch_start
        for batch, counts, factor in epoch_batches(run, self.epoch):
            batch = reweight(to_device(batch, self.device, self.dtype), self.train_factors)
            if run.head_of_type is not None:  # multi-head: each structure trains its head
                batch[K.HEAD] = run.head_of_type.to(self.device)[batch[K.CONFIG_TYPE]]
            load_seconds += time.perf_counter() - load_start
            num_structures += int(batch[K.NUM_ATOMS].shape[0])
            self.optimizer.zero_grad(set_to_none=True)
            pred = run.trained(batch, compute_forces=True, compute_stress=self.compute_stress,
                               create_graph=True)
            loss, parts = compute_loss(pred, batch, self.loss_config, counts)
            if self.anchor is not None:  # one share per process, so that DDP's sum is one
                penalty = self.anchor.penalty() / factor
                loss = loss + penalty
                parts["anchor"] = float(penalty.detach())
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss became {float(loss.detach())} at epoch {self.epoch + 1}. "
                    "Lower training.lr, enable training.grad_clip, or check the data for outliers."
                )
            (loss * factor).backward() if factor != 1.0 else loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.potential.parameters(), grad_clip)
            self.optimizer.step()
            if ema_update is not None:
                ema_update(self.potential)
            changed = run.threads.update()
            if changed is not None:
                self.console.print(f"threads: {changed.describe()}", highlight=False)
            parts["loss"] = float(loss.detach())
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
            num_batches += 1
            load_start = time.perf_counter()
        seconds = time.perf_counter() - epoch_start
        # structures of all processes per second, and the share of time spent waiting for data
        self.throughput = {
            "structures_per_s": self.context.world_size * num_structures / max(seconds, 1e-9),
            "loader_fraction": load_seconds / max(seconds, 1e-9),
            "threads": run.threads.threads,
        }
        if self.context.enabled:  # each share holds part of the global loss: add them up
            keys = sorted(totals)
            summed = all_reduce_sum(torch.tensor([totals[k] for k in keys], dtype=torch.float64),
                                    self.context)
            totals = dict(zip(keys, summed.tolist(), strict=True))
        return {key: value / max(num_batches, 1) for key, value in totals.items()}

    def fit(self) -> TrainResult:
        """Train until max_epochs, the time budget (training.budget_clock) or early stopping."""
        t = self.config.training
        budget = t.budget_seconds
        self.console.print(training_summary(self))
        with ConsoleLog(self.run, t.max_epochs, self.epoch) as console_log:
            callbacks = [*self.callbacks, console_log]
            while (stop_reason := self._stop_reason(budget, callbacks)) is None:
                record = self._epoch()
                for callback in callbacks:
                    callback.epoch_end(self, record)
        if self.anchor is not None and self.last_train_parts is not None:
            check_anchor_effect(self.last_train_parts, self.anchor.strength, self.epoch)
        return finish(self, stop_reason)

    def _stop_reason(self, budget: float, callbacks: list[Callback]) -> str | None:
        """Why the run stops before the next epoch, or None (callbacks may act first)."""
        if self.epoch >= self.config.training.max_epochs:
            return "max_epochs"
        if self.elapsed + self.last_epoch_seconds > budget:
            return "time_budget"
        for callback in callbacks:
            reason = callback.epoch_start(self, budget)
            if reason is not None:
                return reason
        return None

    def _epoch(self) -> dict[str, Any]:
        """Train and validate one epoch; returns its log record (stage, best: callbacks')."""
        t = self.config.training
        clock = t.clock()
        start = clock()
        lr = self.run.schedule.start_epoch(self.epoch, self.elapsed)
        train_parts = self.train_epoch()
        if self.epoch == 0:
            check_first_epoch(train_parts, self.loss_config, 1, self.run.replay_added)
        self.last_train_parts = train_parts
        self.averages.epoch_end()
        valid = evaluate(self.evaluation_model, self.data.valid, t.valid_batch_size,
                         self.loss_config, self.compute_stress, self.context,
                         self.config.data.config_type_weights)
        if not math.isfinite(valid["loss"]):  # else no epoch is ever the best
            raise TrainingDiverged(
                f"the validation loss became {valid['loss']} at epoch {self.epoch + 1}. "
                "Lower training.lr, enable training.grad_clip, or check the data for outliers."
            )
        self.run.schedule.end_epoch(self.epoch, valid["loss"])
        # the slowest process sets the clock, so all agree on when the budget ends
        self.last_epoch_seconds = all_reduce_max(clock() - start, self.context)
        self.elapsed += self.last_epoch_seconds
        self.epoch += 1
        return {"epoch": self.epoch, "stage": None, "lr": lr, "time": round(self.elapsed, 3),
                "train": train_parts, "valid": valid, "best": None, "throughput": self.throughput}


def train(
    config: TrainConfig | dict | str | Path,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    overrides: list[str] | None = None,
) -> TrainResult:
    """Train a model as ``config`` says and write the outputs to ``out_dir``.

    Args:
        config: a TrainConfig, a config dict, or the path of a YAML config.
        out_dir: output folder (default ``runs/<config name>`` or ``runs/train``).
        resume: continue from ``out_dir/last.ckpt`` when it exists.
        progress: show progress on the terminal.
        overrides: ``KEY=VALUE`` settings applied to a YAML config before validation.

    Raises:
        ConfigError: bad config, or an existing run in ``out_dir`` without ``resume``.
        DataError: bad data files.
    """
    name = "train"
    if isinstance(config, (str, Path)):
        name = Path(config).stem
        config = load_config(config, overrides)
    elif isinstance(config, dict):
        config = validate_config(config)
    if config.committee is not None:
        raise ConfigError(
            "this config trains a committee (committee: ...): use `mlff train` or mlff.train(), "
            "which train and combine its members (mlff.train.committee.train_committee)."
        )
    config = resolve_config(config)  # once per run; fine-tuning: the pretrained model section
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / name
    last = out_dir / "last.ckpt"
    if last.exists() and not resume:
        raise ConfigError(
            f"{out_dir} already holds a training run. Use {argument('--resume', 'resume=True')} "
            f"to continue it, or choose another {argument('--out', 'out_dir')}."
        )
    context = init_distributed(config.device)
    trainer = None
    try:
        if context.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            written = yaml.safe_dump(config.model_dump(), sort_keys=False)
            (out_dir / "config.yaml").write_text(written)
        state = load_checkpoint(last) if resume and last.exists() else None
        stored = (state.get("hyperparameters") or {}) if state is not None else {}
        trainer = Trainer(config, out_dir, progress=progress, context=context,
                          avg_num_neighbors=stored.get("avg_num_neighbors"))
        if state is not None:
            trainer.load_state_dict(state, last)
            if context.is_main:
                truncate_log(out_dir / "log.jsonl", trainer.epoch)
            stage = ("" if trainer.stage_two_epoch is None
                     else f" (stage two since epoch {trainer.stage_two_epoch + 1})")
            trainer.console.print(f"resuming {out_dir} after epoch {trainer.epoch}{stage}",
                                  highlight=False)
        elif context.is_main and (out_dir / "log.jsonl").exists():
            (out_dir / "log.jsonl").unlink()
        return trainer.fit()
    finally:
        # the DDP reducer must be freed while the process group is still registered: freed
        # afterwards, its destructor joins gloo's worker thread while holding the GIL that
        # thread may need (a deadlock at exit seen about once in ten runs)
        del trainer
        shutdown(context)
