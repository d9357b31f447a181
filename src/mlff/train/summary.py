"""What a training run is about to do, printed before its first epoch."""

from __future__ import annotations

from typing import Any

import torch


def training_summary(trainer: Any) -> str:
    """Structures, parameters, device, threads and avg_num_neighbors of a :class:`Trainer`.

    One line per topic, for the console (stderr) before epoch 1 (or the resumed epoch).
    """
    config, data, potential = trainer.config, trainer.data, trainer.potential
    t = config.training
    total = sum(p.numel() for p in potential.parameters())
    trained = sum(p.numel() for p in potential.parameters() if p.requires_grad)
    test = f", {len(data.test)} test" if data.test is not None else ""
    neighbours = potential.hyperparameters.get("avg_num_neighbors")
    in_data = f"{data.avg_num_neighbors:.2f}"
    neighbours_text = (f"{neighbours:.2f} (model), {in_data} in the training data"
                       if isinstance(neighbours, (int, float)) else f"{in_data} (training data)")
    budget = f"{t.max_epochs} epochs"
    if t.max_minutes is not None:
        budget += f" or {t.max_minutes:g} min" + (" of CPU time" if t.budget_clock == "cpu" else "")
    processes = trainer.context.world_size if trainer.context.enabled else 1
    lines = [
        f"training {potential.hyperparameters['architecture']} in {trainer.out_dir}",
        f"  structures       {len(data.train)} train, {len(data.valid)} valid{test}",
        f"  parameters       {total:,}" + (f" ({trained:,} trained)" if trained != total else ""),
        f"  device           {trainer.device} {config.dtype}, {torch.get_num_threads()} thread(s)"
        + (f" x {processes} processes" if processes > 1 else ""),
        f"  cutoff           {potential.cutoff:g} Å; avg_num_neighbors {neighbours_text}",
        f"  budget           {budget}, batch size {t.batch_size}",
    ]
    if trainer.epoch > 0:
        lines.append(f"  resuming at      epoch {trainer.epoch + 1}")
    return "\n".join(lines)
