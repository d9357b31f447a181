"""Where reference calculations run: a local process pool, or a Dask cluster.

:func:`make_executor` returns a :class:`concurrent.futures.Executor` to use as a
context manager (leaving it shuts the workers, and any cluster it started, down):

- default: a :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers`` processes
  started with ``forkserver`` (``spawn`` where that is unavailable), never ``fork``, so a
  parent that already runs torch or OpenMP threads is safe;
- ``scheduler``: the executor of a :class:`distributed.Client` connected to a running
  Dask scheduler (``dask scheduler``, or a dask-jobqueue ``SLURMCluster``; see
  ``docs/oracles.md``);
- ``local_cluster``: a Dask ``LocalCluster`` of ``workers`` single-threaded worker
  processes on this machine (for tests, or to try the Dask path on one machine).

Every worker must be able to import ``mlff`` and the oracle's code.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlff.errors import OracleError


class ExecutorConfig(BaseModel):
    """Where to run the calculations.

    Attributes:
        scheduler: address of a running Dask scheduler (``tcp://host:8786``); ``None``
            runs locally.
        workers: number of local worker processes (pool or local cluster); ``None``:
            the number of cores this process may use. Not used with ``scheduler``.
        local_cluster: start a Dask ``LocalCluster`` instead of a process pool.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    scheduler: str | None = None
    workers: int | None = Field(default=None, ge=1)
    local_cluster: bool = False

    @model_validator(mode="after")
    def _check(self) -> ExecutorConfig:
        if self.scheduler is not None and self.local_cluster:
            raise ValueError("give either scheduler (an existing Dask cluster) or "
                             "local_cluster (start one here), not both")
        if self.scheduler is not None and self.workers is not None:
            raise ValueError("workers sets the size of a local pool or cluster; a Dask "
                             "scheduler's workers are started with the cluster")
        return self


def default_workers() -> int:
    """The number of cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class DaskExecutor(Executor):
    """A Dask client's executor that also closes the client (and its cluster) on shutdown.

    Every submission is impure (``pure=False``): two identical structures are two
    calculations, as with a process pool.
    """

    def __init__(self, client: Any, cluster: Any = None) -> None:
        self.client = client
        self.cluster = cluster
        self._executor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a Dask worker."""
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop submitting, then close the client and the cluster this executor started."""
        self._executor.shutdown(wait=wait)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _pool_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` preloading the labelling code (imported once, not once per worker,
    while the server has no threads yet), or ``spawn`` where there is no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlff.oracles.label"])
    return context


def make_executor(config: ExecutorConfig | None = None) -> Executor:
    """The executor ``config`` describes (a process pool when ``None``).

    Raises:
        OracleError: the Dask scheduler cannot be reached, or a local cluster cannot start.
    """
    config = config or ExecutorConfig()
    workers = config.workers or default_workers()
    if config.scheduler is None and not config.local_cluster:
        return ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context())
    from distributed import Client, LocalCluster

    if config.local_cluster:
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        except Exception as exc:
            raise OracleError(f"cannot start a Dask LocalCluster of {workers} workers "
                              f"({type(exc).__name__}: {exc}).") from None
        return DaskExecutor(Client(cluster), cluster)
    try:
        client = Client(config.scheduler, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise OracleError(
            f"cannot reach the Dask scheduler at {config.scheduler} ({exc}). Start one "
            "(`dask scheduler`, or a dask-jobqueue SLURMCluster) and give its address, "
            "e.g. tcp://node17:8786."
        ) from None
    return DaskExecutor(client)
