"""Everything a training run works with, set up by :func:`build_run`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from mlff.console import plain_console
from mlff.data import keys as K
from mlff.data.dataset import BatchLoader
from mlff.data.packed import ChunkedShuffleLoader
from mlff.models.potential import Potential
from mlff.models.precision import torch_dtype
from mlff.threads import ThreadGovernor
from mlff.train.averaging import WeightAverage
from mlff.train.config import ResolvedConfig, TrainConfig
from mlff.train.data import TrainingData, load_training_data
from mlff.train.distributed import DistributedContext
from mlff.train.finetune import learning_rate, resolve_config
from mlff.train.loss import config_type_factors, label_counts
from mlff.train.replay import loss_factors
from mlff.train.schedule import LRSchedule
from mlff.train.start import head_of_config_type, starting_potential


@dataclass
class Run:
    """The parts of one training run. ``trained`` is ``potential`` or, with several
    processes, its DDP wrapper; ``structure_table`` (several processes only) holds each
    training structure's atoms and label counts; ``replay_added`` counts the replay
    structures the starting model labelled (fine-tuning); ``head_of_type`` (multi-head
    fine-tuning) maps each training config_type tag to the head it trains."""

    config: ResolvedConfig
    out_dir: Path
    context: DistributedContext
    console: Console
    show_bar: bool
    threads: ThreadGovernor
    data: TrainingData
    potential: Potential
    trained: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    ema: WeightAverage | None
    loader: BatchLoader | ChunkedShuffleLoader
    train_factors: torch.Tensor | None
    replay_added: int
    structure_table: list[tuple[int, dict[str, int]]] | None
    head_of_type: torch.Tensor | None = None


def build_run(config: TrainConfig, out_dir: Path, progress: bool = True,
              context: DistributedContext | None = None,
              avg_num_neighbors: float | None = None) -> Run:
    """Set up a run: threads, seed, data, model, DDP, optimizer, schedule, EMA and loader.

    ``avg_num_neighbors``: a resumed run's stored value (default: from the training data).
    """
    config = resolve_config(config)
    context = context or DistributedContext(device=torch.device(config.device))
    console = plain_console(stderr=True, quiet=not (progress and context.is_main))
    device, dtype = context.device, torch_dtype(config.dtype)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", context.world_size)) \
        if context.enabled and device.type == "cpu" else 1
    threads = ThreadGovernor(config.threads, share=per_node)
    console.print(f"threads: {threads.choice.describe()}", highlight=False)
    torch.manual_seed(config.seed)
    data = load_training_data(config)
    potential, replay_added = starting_potential(config, data, console, device, dtype,
                                                 avg_num_neighbors)
    t = config.training
    parameters = [p for p in potential.parameters() if p.requires_grad]
    optimizer_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    lr = learning_rate(config)  # training.lr, times finetune.lr_factor when fine-tuning
    optimizer = optimizer_cls(parameters, lr=lr, weight_decay=t.weight_decay, amsgrad=t.amsgrad)
    schedule = LRSchedule(optimizer, t.scheduler, lr, t.max_epochs, t.budget_seconds)
    ema = WeightAverage(potential, t.ema_decay, t.ema_warmup) if t.ema_decay is not None else None
    loader: BatchLoader | ChunkedShuffleLoader = BatchLoader(
        data.train, t.batch_size, shuffle=True, seed=config.seed, max_atoms=t.batch_atoms,
        num_workers=t.num_workers, pin_memory=device.type == "cuda",
    )
    if config.data.stream:  # a packed training set, read and shuffled chunk by chunk
        loader = ChunkedShuffleLoader(data.train, t.batch_size, config.seed,
                                      config.data.chunk_structures, max_atoms=t.batch_atoms)
    train_factors = config_type_factors(data.train.config_types, loss_factors(config))
    trained: torch.nn.Module = potential
    structure_table = None
    if context.enabled:  # per structure: atoms, and the label counts the loss averages over
        trained = torch.nn.parallel.DistributedDataParallel(
            potential, device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,  # gradients live in the all-reduce buckets: no copies
        )
        structure_table = [(int(g[K.NUM_ATOMS][0]), label_counts(g)) for g in data.train]
    # a live bar only on a terminal; elsewhere (logs, CI) the per-epoch lines suffice
    return Run(config, out_dir, context, console, progress and console.is_terminal, threads,
               data, potential, trained, optimizer, schedule, ema, loader, train_factors,
               replay_added, structure_table,
               head_of_config_type(config, data.train.config_types))
