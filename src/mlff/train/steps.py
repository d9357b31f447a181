"""The batches of one training epoch, and this process's share of them."""

from __future__ import annotations

from collections.abc import Iterator

from mlff.data.graph import Graph, collate
from mlff.train.distributed import split_by_atoms
from mlff.train.run import Run


def epoch_batches(run: Run, epoch: int) -> Iterator[tuple[Graph, dict[str, int] | None, float]]:
    """Yield (batch, counts, loss factor) for each optimisation step of ``epoch``.

    One process: the loader's batches. Several: each process takes its atom-balanced
    share of every global batch, with the global label counts as denominators and a
    factor world_size that undoes DDP's averaging of the gradients. A last global
    batch with fewer structures than processes is skipped.
    """
    context = run.context
    if not context.enabled:
        for batch in run.loader.batches(epoch):
            yield batch, None, 1.0
        return
    world, table = context.world_size, run.structure_table
    assert table is not None
    for indices in run.loader.index_batches(epoch):
        if len(indices) < world:
            continue
        num_atoms = {i: table[i][0] for i in indices}
        share = split_by_atoms(indices, num_atoms, world)[context.rank]
        counts = {key: sum(table[i][1][key] for i in indices)
                  for key in ("energy", "forces", "stress")}
        yield collate([run.data.train[i] for i in share]), counts, float(world)
