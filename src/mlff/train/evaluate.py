"""Validation during training: error metrics and the loss of a model on a dataset."""

from __future__ import annotations

import torch

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.models.metrics import ErrorAccumulator
from mlff.models.potential import Potential
from mlff.models.predict import batched_outputs
from mlff.train.config import LossConfig
from mlff.train.distributed import DistributedContext, all_reduce_sum
from mlff.train.loss import compute_loss, config_type_factors, reweight


def evaluate(
    potential: Potential,
    dataset: GraphDataset,
    batch_size: int,
    loss_config: LossConfig | None = None,
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
