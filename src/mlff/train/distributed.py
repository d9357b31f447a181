"""Multi-process training on ``torch.distributed``: process groups, sharding, reductions.

Launched by ``torchrun`` (or ``mlff train --nproc N``, which calls it): each process reads
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment, joins a gloo (CPU) or
NCCL (CUDA) process group, and trains a DistributedDataParallel copy of the model on its
share of every global batch. Shares are balanced by atom count, and the loss is
normalised by the global batch's label counts, so the weights follow the single-process
run with the same global batch (up to the order of floating-point sums).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run.

    Attributes:
        rank: global rank, 0..world_size-1.
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        device: the torch device of this process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process launch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str) -> DistributedContext:
    """Join the process group described by the environment (a no-op for one process).

    Args:
        device: the config's device; ``cuda`` becomes ``cuda:LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return DistributedContext(device=torch.device(device))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    base = torch.device(device)
    if base.type == "cuda":
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
        backend = "nccl"
    else:
        torch_device = base
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, torch_device)


def shutdown(context: DistributedContext) -> None:
    """Leave the process group.

    No barrier first: every collective of training has completed, and a barrier's work item,
    destroyed on gloo's thread, needs the GIL while this thread may hold it in the process
    group's destructor (a deadlock at exit).
    """
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def split_by_atoms(indices: Sequence[int], num_atoms: Sequence[int], parts: int) -> list[list[int]]:
    """Split structures into ``parts`` shares of nearly equal atom counts.

    Greedy: the largest structures first, each to the share with the fewest atoms so far.
    Deterministic; each share keeps the order of ``indices``.
    """
    shares: list[list[int]] = [[] for _ in range(parts)]
    loads = [0] * parts
    position = {index: k for k, index in enumerate(indices)}
    for index in sorted(indices, key=lambda i: (-num_atoms[i], position[i])):
        target = min(range(parts), key=lambda p: (loads[p], p))
        shares[target].append(index)
        loads[target] += num_atoms[index]
    return [sorted(share, key=position.__getitem__) for share in shares]


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum a tensor over all processes (returned on the tensor's device)."""
    if not context.enabled:
        return values
    reduced = values.clone().to(context.device)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(values.device)


def all_reduce_max(value: float, context: DistributedContext) -> float:
    """The largest of a number over all processes."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor[0])
