"""The training loop: EMA, schedules, clipping, early stopping, budget, checkpoint/resume.

Output folder layout (``out_dir``):
    config.yaml   the full resolved config
    log.jsonl     one JSON object per epoch (losses, metrics, learning rate, time)
    last.ckpt     everything needed to resume, written after every epoch
    best.ckpt     the weights (EMA when on) with the lowest validation loss so far (in stage
                  two: so far in stage two, SWA weights with stage_two.swa)
    model.mlff    the best model, written at the end, with test metrics when a test set is given
    metrics.json  final validation and test metrics
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlff.console import plain_console
from mlff.data import keys as K
from mlff.data.dataset import BatchLoader, GraphDataset
from mlff.data.example import example_record
from mlff.data.graph import collate, to_device
from mlff.data.packed import ChunkedShuffleLoader
from mlff.errors import ConfigError, MLFFError
from mlff.interface import argument
from mlff.models.contract import hyperparameters_from_data
from mlff.models.io import save_model
from mlff.models.metrics import ErrorAccumulator
from mlff.models.potential import Potential
from mlff.models.precision import torch_dtype
from mlff.models.predict import batched_outputs
from mlff.models.registry import build_model, get_architecture
from mlff.threads import ThreadGovernor
from mlff.train.anchor import anchor_from_config
from mlff.train.averaging import WeightAverage
from mlff.train.checkpoint import load_checkpoint, save_checkpoint
from mlff.train.config import LossConfig, TrainConfig, load_config, validate_config
from mlff.train.data import TrainingData, load_training_data
from mlff.train.finetune import (
    finetune_record,
    grown_entries,
    learning_rate,
    potential_from_pretrained,
    resolve_config,
)
from mlff.train.distributed import (
    DistributedContext,
    all_reduce_max,
    all_reduce_sum,
    init_distributed,
    shutdown,
    split_by_atoms,
)
from mlff.train.guards import (
    check_anchor_effect,
    check_first_epoch,
    check_loss_weights,
    check_trainable,
)
from mlff.train.loss import compute_loss, config_type_factors, label_counts, reweight
from mlff.train.replay import add_pseudo_labelled_replay, loss_factors
from mlff.train.schedule import LRSchedule
from mlff.train.summary import training_summary

# keys whose change does not prevent resuming (they only decide when to stop)
# a validation loss counts as better only when it is lower by this fraction
_MIN_RELATIVE_IMPROVEMENT = 1e-6
_RESUMABLE_CHANGES = {"max_epochs", "max_minutes", "early_stopping_patience"}


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


class TrainingDiverged(MLFFError):
    """The loss became NaN or infinite."""


def build_potential(
    config: TrainConfig, data: TrainingData, avg_num_neighbors: float | None = None
) -> Potential:
    """Build the architecture of ``config`` with the normalisation from ``data``.

    An ``avg_num_neighbors`` hyperparameter the config leaves ``null`` is set to the
    ``avg_num_neighbors`` argument (a resumed run's stored value) or else to the training
    data's mean number of neighbours per atom, so the model file stores the number. A
    fine-tuned model keeps the pretrained model's hyperparameters.
    """
    if config.finetune is not None:
        return potential_from_pretrained(config, data)
    hyperparameters = hyperparameters_from_data(
        get_architecture(config.model["architecture"]),
        dict(config.model),
        avg_num_neighbors if avg_num_neighbors is not None else data.avg_num_neighbors,
    )
    model = build_model(hyperparameters, len(data.species))
    return Potential(
        model,
        hyperparameters,
        data.species,
        [data.e0s[z] for z in data.species],
        scale=data.scale,
        shift=data.shift,
    )


def align_energy_offset(potential: Potential, dataset: GraphDataset, max_structures: int = 256) -> float:
    """Fold the untrained model's mean per-atom energy error into ``shift``.

    A freshly initialised network predicts per-atom energies offset by a random constant;
    removing it before training spares the optimizer many epochs of learning a constant.
    Returns the correction, eV/atom.
    """
    subset = dataset.subset(range(min(len(dataset), max_structures)))
    errors = []
    with torch.no_grad():
        for batch, pred in batched_outputs(potential, subset, 64, compute_forces=False):
            has = batch[K.HAS_ENERGY]
            errors.append(((pred[K.ENERGY] - batch[K.ENERGY]) / batch[K.NUM_ATOMS])[has])
    if not errors or sum(e.numel() for e in errors) == 0:
        return 0.0
    correction = float(torch.cat(errors).mean())
    potential.shift.sub_(correction)
    return correction


def evaluate(
    potential: Potential,
    dataset: GraphDataset,
    batch_size: int,
    loss_config=None,
    compute_stress: bool = False,
    context: DistributedContext | None = None,
    config_type_weights: dict[str, float] | None = None,
) -> dict[str, float]:
    """Error metrics (meV units, see :class:`ErrorAccumulator`) and the loss on ``dataset``.

    In a distributed run (``context``), each process evaluates every world_size-th
    structure and the sums are reduced, so every process gets the same numbers.
    ``config_type_weights`` (``data.config_type_weights``) reweight the loss only.
    """
    context = context or DistributedContext()
    factors = config_type_factors(dataset.config_types, config_type_weights or {})
    if context.enabled:
        dataset = dataset.subset(range(context.rank, len(dataset), context.world_size))
    accumulator = ErrorAccumulator()
    loss_sum, count = 0.0, 0
    for batch, pred in batched_outputs(potential, dataset, batch_size,
                                       compute_stress=compute_stress):
        accumulator.update(pred, batch)
        if loss_config is not None:
            loss, _ = compute_loss(pred, reweight(batch, factors), loss_config)
            loss_sum += float(loss) * len(batch[K.NUM_ATOMS])
            count += len(batch[K.NUM_ATOMS])
    if context.enabled:
        accumulator.reduce(lambda flat: all_reduce_sum(flat, context))
        loss_sum, count = all_reduce_sum(torch.tensor([loss_sum, count], dtype=torch.float64),
                                         context).tolist()
    metrics = accumulator.compute()
    if loss_config is not None:
        metrics["loss"] = loss_sum / max(count, 1)
    return metrics


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
        """Load the data and build the model, optimizer and loaders.

        ``avg_num_neighbors``: the value a resumed run stored, for a model whose
        ``avg_num_neighbors`` the config leaves ``null`` (default: from the training data).
        """
        self.config = config = resolve_config(config)
        self.out_dir = out_dir
        self.context = context or DistributedContext(device=torch.device(config.device))
        self.console = plain_console(stderr=True, quiet=not (progress and self.context.is_main))
        # a live bar only on a terminal; elsewhere (logs, CI) the per-epoch lines suffice
        self.show_bar = progress and self.console.is_terminal
        self.device = self.context.device
        self.dtype = torch_dtype(config.dtype)
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", self.context.world_size)) \
            if self.context.enabled and self.device.type == "cpu" else 1
        self.threads = ThreadGovernor(config.threads, share=per_node)
        self.console.print(f"threads: {self.threads.choice.describe()}", highlight=False)
        torch.manual_seed(config.seed)

        self.data = load_training_data(config)
        potential = build_potential(config, self.data, avg_num_neighbors)
        # fine-tuning replay: labelled by the model as it starts (pretrained weights, new E0s)
        self.replay_added = add_pseudo_labelled_replay(config, self.data, potential)
        check_trainable(potential, config)
        check_loss_weights(config.training.loss)
        if config.finetune is None:  # the hyperparameters the data (or checkpoint) filled in
            origin = "the checkpoint" if avg_num_neighbors is not None else "the training data"
            for key, value in potential.hyperparameters.items():
                if config.model.get(key, 0) is None and value is not None:
                    self.console.print(f"model.{key} = {value:.4f} (from {origin})",
                                       highlight=False)
        # an element absent from the training set has no embedding: name its file and frame
        for dataset in (self.data.valid, self.data.test):
            if dataset is not None:
                potential.check_structures(dataset, dataset.sources)
        self.potential = potential.to(device=self.device, dtype=self.dtype)
        if config.finetune is None:  # a pretrained model's offset is meaningful
            align_energy_offset(self.potential, self.data.train)
        self.potential.metadata = {"data_fingerprint": self.data.fingerprints}
        # L2-SP: the weights as fine-tuning starts, in the training dtype
        self.anchor = anchor_from_config(
            self.potential, config.finetune.anchor if config.finetune else None,
            grown_entries(self.potential))
        t = config.training
        parameters = [p for p in self.potential.parameters() if p.requires_grad]
        optimizer_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        lr = learning_rate(config)  # training.lr, times finetune.lr_factor when fine-tuning
        self.optimizer = optimizer_cls(parameters, lr=lr, weight_decay=t.weight_decay, amsgrad=t.amsgrad)
        self.schedule = LRSchedule(self.optimizer, t.scheduler, lr, t.max_epochs)
        self.ema = (WeightAverage(self.potential, t.ema_decay, t.ema_warmup)
                    if t.ema_decay is not None else None)
        self.loader = BatchLoader(
            self.data.train, t.batch_size, shuffle=True, seed=config.seed, max_atoms=t.batch_atoms,
            num_workers=t.num_workers, pin_memory=self.device.type == "cuda",
        )
        if config.data.stream:  # a packed training set, read and shuffled chunk by chunk
            self.loader = ChunkedShuffleLoader(self.data.train, t.batch_size, config.seed,
                                               config.data.chunk_structures, max_atoms=t.batch_atoms)
        self.loss_config: LossConfig = t.loss  # the loss of the current stage
        self.compute_stress = t.loss.stress_weight > 0
        self.train_factors = config_type_factors(self.data.train.config_types,
                                                 loss_factors(config))
        self.stage_two_epoch: int | None = None  # the first epoch (0-based) of stage two
        self.swa: WeightAverage | None = None  # stage two with swa: the averaged weights
        self.trained: torch.nn.Module = self.potential
        if self.context.enabled:
            self.trained = torch.nn.parallel.DistributedDataParallel(
                self.potential,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,  # gradients live in the all-reduce buckets: no copies
            )
            # per structure: atoms, and the label counts the loss terms average over
            self.structure_table = [
                (int(g[K.NUM_ATOMS][0]), label_counts(g)) for g in self.data.train
            ]
        self.epoch = 0
        self.best_valid_loss = math.inf
        self.best_epoch = -1
        self.epochs_since_best = 0
        self.elapsed = 0.0
        self.best_valid_metrics: dict[str, float] = {}

    @property
    def evaluation_model(self) -> Potential:
        """The SWA weights in stage two with swa, else the EMA weights when EMA is on, else
        the trained weights."""
        if self.swa is not None:
            return self.swa.module
        return self.ema.module if self.ema is not None else self.potential

    # --- stage two -----------------------------------------------------------------------
    def _stage_two_due(self, budget_seconds: float) -> str | None:
        """Why stage two starts before the next epoch (``start_fraction`` of ``max_epochs``
        trained, or of the wall-clock budget in seconds used), or ``None`` if it does not."""
        t = self.config.training
        if t.stage_two is None or self.stage_two_epoch is not None:
            return None
        fraction = t.stage_two.start_fraction
        if self.epoch >= fraction * t.max_epochs:
            return f"{fraction:g} of max_epochs"
        if self.elapsed >= fraction * budget_seconds:
            return f"{fraction:g} of max_minutes"
        return None

    def enter_stage_two(self, reason: str | None = None) -> None:
        """Switch to ``training.stage_two``'s loss weights and learning rate from the next epoch.

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
        self.stage_two_epoch = self.epoch
        self.loss_config = t.stage_two_loss()
        self.compute_stress = self.loss_config.stress_weight > 0
        lr = stage.lr if stage.lr is not None else learning_rate(self.config) / 10
        scheduler = t.scheduler.model_copy(update={
            "warmup_epochs": 0, "name": "plateau" if t.scheduler.name == "plateau" else "constant"})
        self.schedule = LRSchedule(self.optimizer, scheduler, lr, t.max_epochs)
        if stage.swa:
            self.swa = WeightAverage(self.potential)
        self.best_valid_loss = math.inf
        self.epochs_since_best = 0
        if reason is not None:
            loss = self.loss_config
            self.console.print(
                f"stage two from epoch {self.epoch + 1} ({reason}): weights E "
                f"{loss.energy_weight:g} F {loss.forces_weight:g} S {loss.stress_weight:g}, "
                f"lr {lr:.1e}{', SWA' if stage.swa else ''}",
                highlight=False, soft_wrap=True,
            )

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        return {
            "epoch": self.epoch,
            "config": self.config.model_dump(),
            "model": self.potential.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "best_valid_loss": self.best_valid_loss,
            "best_epoch": self.best_epoch,
            "epochs_since_best": self.epochs_since_best,
            "best_valid_metrics": self.best_valid_metrics,
            "elapsed": self.elapsed,
            "torch_rng": torch.get_rng_state(),
            "stage_two_epoch": self.stage_two_epoch,
            "swa": self.swa.state_dict() if self.swa is not None else None,
            "hyperparameters": self.potential.hyperparameters,
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint of the same run."""
        saved, current = state["config"], self.config.model_dump()
        differences = _differences(saved, current)
        if differences:
            raise ConfigError(
                f"{source}: cannot resume, the config differs from the checkpoint's in "
                f"{', '.join(differences)}. Start a new run in another folder, or restore those keys."
            )
        self.epoch = state["epoch"]
        if state.get("stage_two_epoch") is not None:  # absent from older checkpoints
            self.enter_stage_two()
            self.stage_two_epoch = state["stage_two_epoch"]
        self.potential.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.best_valid_loss = state["best_valid_loss"]
        self.best_epoch = state["best_epoch"]
        self.epochs_since_best = state["epochs_since_best"]
        self.best_valid_metrics = state["best_valid_metrics"]
        self.elapsed = state["elapsed"]
        if self.swa is not None:
            self.swa.load_state_dict(state["swa"])
        torch.set_rng_state(state["torch_rng"])

    def _save_best(self) -> None:
        save_checkpoint(
            {
                "epoch": self.epoch,
                "config": self.config.model_dump(),
                "model": self.evaluation_model.state_dict(),
                "valid_metrics": self.best_valid_metrics,
            },
            self.out_dir / "best.ckpt",
        )

    # --- the loop ----------------------------------------------------------------------
    def _steps(self):
        """Yield (batch, counts, loss factor) for each optimisation step of the epoch.

        One process: the loader's batches. Several: each process takes its atom-balanced
        share of every global batch, with the global label counts as denominators and a
        factor world_size that undoes DDP's averaging of the gradients. A last global
        batch with fewer structures than processes is skipped.
        """
        if not self.context.enabled:
            for batch in self.loader.batches(self.epoch):
                yield batch, None, 1.0
            return
        world = self.context.world_size
        for indices in self.loader.index_batches(self.epoch):
            if len(indices) < world:
                continue
            num_atoms = {i: self.structure_table[i][0] for i in indices}
            share = split_by_atoms(indices, num_atoms, world)[self.context.rank]
            counts = {key: sum(self.structure_table[i][1][key] for i in indices)
                      for key in ("energy", "forces", "stress")}
            yield collate([self.data.train[i] for i in share]), counts, float(world)

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set; returns the mean loss parts."""
        t = self.config.training
        self.potential.train()
        totals: dict[str, float] = {}
        num_batches = num_structures = 0
        epoch_start = time.perf_counter()
        load_seconds, load_start = 0.0, epoch_start
        for batch, counts, factor in self._steps():
            batch = reweight(to_device(batch, self.device, self.dtype), self.train_factors)
            load_seconds += time.perf_counter() - load_start
            num_structures += int(batch[K.NUM_ATOMS].shape[0])
            self.optimizer.zero_grad(set_to_none=True)
            pred = self.trained(batch, compute_forces=True, compute_stress=self.compute_stress,
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
            if t.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.potential.parameters(), t.grad_clip)
            self.optimizer.step()
            if self.ema is not None and self.swa is None:
                self.ema.update_parameters(self.potential)
            changed = self.threads.update()
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
            "threads": self.threads.threads,
        }
        if self.context.enabled:  # each share holds part of the global loss: add them up
            keys = sorted(totals)
            summed = all_reduce_sum(torch.tensor([totals[k] for k in keys], dtype=torch.float64),
                                    self.context)
            totals = dict(zip(keys, summed.tolist()))
        return {key: value / max(num_batches, 1) for key, value in totals.items()}

    def fit(self) -> TrainResult:
        """Train until max_epochs, the wall-clock budget or early stopping."""
        t = self.config.training
        budget = t.max_minutes * 60 if t.max_minutes is not None else math.inf
        log_path = self.out_dir / "log.jsonl"
        stop_reason = "max_epochs"
        last_epoch_seconds = 0.0
        self.console.print(training_summary(self))
        columns = (TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"))
        with Progress(*columns, console=self.console, disable=not self.show_bar) as bar:
            task = bar.add_task("", total=t.max_epochs, completed=self.epoch)
            while True:
                if self.epoch >= t.max_epochs:
                    stop_reason = "max_epochs"
                    break
                if self.elapsed + last_epoch_seconds > budget:
                    stop_reason = "time_budget"
                    break
                reason = self._stage_two_due(budget)
                if reason is not None:
                    self.enter_stage_two(reason)
                if t.early_stopping_patience is not None and self.epochs_since_best >= t.early_stopping_patience:
                    if t.stage_two is None or self.stage_two_epoch is not None:
                        stop_reason = "early_stopping"
                        break
                    self.enter_stage_two("early stopping in stage one")
                start = time.perf_counter()
                lr = self.schedule.start_epoch(self.epoch)
                train_parts = self.train_epoch()
                if self.epoch == 0:
                    check_first_epoch(train_parts, self.loss_config, 1, self.replay_added)
                self.last_train_parts = train_parts
                if self.swa is not None:
                    self.swa.update_parameters(self.potential)
                valid = evaluate(self.evaluation_model, self.data.valid, t.valid_batch_size,
                                 self.loss_config, self.compute_stress, self.context,
                                 self.config.data.config_type_weights)
                if not math.isfinite(valid["loss"]):  # else no epoch is ever the best
                    raise TrainingDiverged(
                        f"the validation loss became {valid['loss']} at epoch {self.epoch + 1}. "
                        "Lower training.lr, enable training.grad_clip, or check the data for "
                        "outliers."
                    )
                self.schedule.end_epoch(self.epoch, valid["loss"])
                improved = valid["loss"] < self.best_valid_loss * (1 - _MIN_RELATIVE_IMPROVEMENT)
                if improved:
                    self.best_valid_loss = valid["loss"]
                    self.best_epoch = self.epoch
                    self.epochs_since_best = 0
                    self.best_valid_metrics = valid
                else:
                    self.epochs_since_best += 1
                # the slowest process sets the clock, so all agree on when the budget ends
                last_epoch_seconds = all_reduce_max(time.perf_counter() - start, self.context)
                self.elapsed += last_epoch_seconds
                self.epoch += 1
                if self.context.is_main:
                    if improved:
                        self._save_best()
                    save_checkpoint(self.state_dict(), self.out_dir / "last.ckpt")
                    stage = 1 if self.stage_two_epoch is None else 2
                    record = {"epoch": self.epoch, "stage": stage, "lr": lr,
                              "time": round(self.elapsed, 3),
                              "train": train_parts, "valid": valid, "best": improved,
                              "throughput": self.throughput}
                    with open(log_path, "a") as log:
                        log.write(json.dumps(record) + "\n")
                summary = (f"loss {valid['loss']:.3g}  E {valid.get('energy_mae_meV_per_atom', math.nan):.2f} "
                           f"meV/atom  F {valid.get('forces_mae_meV_per_A', math.nan):.1f} meV/Å  lr {lr:.1e}")
                bar.update(task, advance=1, description=summary)
                if improved or self.epoch % 10 == 0:
                    bar.console.print(f"epoch {self.epoch:4d}  {summary}{'  *' if improved else ''}",
                                      highlight=False)
        return self._finish(stop_reason)

    def _finish(self, stop_reason: str) -> TrainResult:
        t = self.config.training
        if not self.context.is_main:  # the main process evaluates the test set and writes
            return TrainResult(self.out_dir, self.out_dir / "model.mlff", self.epoch,
                               self.best_epoch + 1, self.best_valid_loss, stop_reason,
                               self.elapsed, self.best_valid_metrics, None)
        last_parts = getattr(self, "last_train_parts", None)
        if self.anchor is not None and last_parts is not None:
            check_anchor_effect(last_parts, self.anchor.strength, self.epoch)
        best = load_checkpoint(self.out_dir / "best.ckpt")
        final = self.evaluation_model
        final.load_state_dict(best["model"])
        final.eval()
        test_metrics = None
        if self.data.test is not None:
            test_metrics = evaluate(final, self.data.test, t.valid_batch_size, None, self.compute_stress)
        final.metadata = {
            "data_fingerprint": self.data.fingerprints,
            "test_metrics": test_metrics or {},
            "training": {
                "epochs": self.epoch,
                "best_epoch": self.best_epoch + 1,
                "stop_reason": stop_reason,
                "wall_seconds": round(self.elapsed, 1),
                "valid_metrics": self.best_valid_metrics,
                "num_train": len(self.data.train),
                "num_valid": len(self.data.valid),
                "finetune": finetune_record(self.config),
                "stage_two_start_epoch": (None if self.stage_two_epoch is None
                                          else self.stage_two_epoch + 1),
                "threads": self.threads.choice.describe(),
                "example_structure": example_record(self.data.train),
            },
        }
        if self.config.data.dispersion is not None:  # trained on labels minus D3
            final.metadata["dispersion"] = self.config.data.dispersion.to_metadata()
        model_path = save_model(final, self.out_dir / "model.mlff")
        (self.out_dir / "metrics.json").write_text(
            json.dumps({"valid": self.best_valid_metrics, "test": test_metrics}, indent=2)
        )
        self.console.print(
            f"done ({stop_reason}) after {self.epoch} epochs, {self.elapsed:.0f} s; best epoch "
            f"{self.best_epoch + 1}", highlight=False,
        )
        return TrainResult(
            out_dir=self.out_dir,
            model_path=model_path,
            epochs=self.epoch,
            best_epoch=self.best_epoch + 1,
            best_valid_loss=self.best_valid_loss,
            stop_reason=stop_reason,
            wall_seconds=self.elapsed,
            valid_metrics=self.best_valid_metrics,
            test_metrics=test_metrics,
        )


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if key not in saved and b in (None, {}, []):
            continue  # a key added to mlff after the checkpoint, left off (null or empty)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b and key not in _RESUMABLE_CHANGES:
            found.append(f"{prefix}{key}")
    return found


def _truncate_log(path: Path, epochs: int) -> None:
    """Drop log lines of epochs after the checkpoint (a kill can leave one behind)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["epoch"] <= epochs]
    path.write_text("".join(line + "\n" for line in kept))


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
    config = resolve_config(config)  # fine-tuning: the model section from the pretrained model
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
            (out_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
        state = load_checkpoint(last) if resume and last.exists() else None
        stored = (state.get("hyperparameters") or {}) if state is not None else {}
        trainer = Trainer(config, out_dir, progress=progress, context=context,
                          avg_num_neighbors=stored.get("avg_num_neighbors"))
        if state is not None:
            trainer.load_state_dict(state, last)
            if context.is_main:
                _truncate_log(out_dir / "log.jsonl", trainer.epoch)
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
