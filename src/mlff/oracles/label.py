"""Label many structures on an executor, handing each result back as soon as it is done.

Workers receive the (picklable) oracle config and one structure, build their own
calculator, and return a :class:`LabelResult`; the parent calls ``on_result`` for each
in completion order, so the caller can commit every label the moment it exists and a
killed run loses at most the calculations in flight.

Examples:
    >>> from ase.build import bulk                                    # doctest: +SKIP
    >>> with make_executor(ExecutorConfig(workers=4)) as executor:    # doctest: +SKIP
    ...     results = label_many([bulk("Cu")] * 8, {"type": "emt"}, executor,
    ...                          on_result=lambda i, r: print(i, r.ok))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, as_completed
from pathlib import Path
from typing import Any

from ase import Atoms

from mlff.errors import OracleError
from mlff.oracles.compute import LabelResult
from mlff.oracles.config import OracleConfig
from mlff.oracles.oracle import Oracle, load_oracle


def label_structure(config: OracleConfig, atoms: Atoms) -> LabelResult:
    """Label one structure with a fresh oracle (the task run on a worker)."""
    return Oracle(config).label(atoms)


def label_many(
    structures: Sequence[Atoms],
    oracle_config: str | Path | dict[str, Any] | OracleConfig,
    executor: Executor,
    on_result: Callable[[int, LabelResult], None] | None = None,
) -> list[LabelResult]:
    """Label every structure on ``executor``.

    Args:
        structures: the structures (positions Å, cell rows Å).
        oracle_config: the oracle, as for :func:`~mlff.oracles.oracle.load_oracle`;
            validated here, before anything is submitted.
        executor: any :class:`concurrent.futures.Executor` (see
            :func:`~mlff.oracles.executors.make_executor`).
        on_result: called in this process as ``on_result(index, result)`` for each
            structure as its calculation finishes (completion order, not input order).
            If it raises, the calculations not yet started are cancelled and the
            exception propagates.

    Returns:
        The results in input order. A failed calculation is a result with ``ok=False``
        and its reason, never an exception.

    Raises:
        ConfigError: the oracle config is invalid.
        OracleError: the executor itself failed (a worker process died, the cluster went
            away). Results delivered to ``on_result`` before that stay valid: commit them
            as they come and run again for the rest. Set the oracle's ``timeout`` to run
            each calculation in its own process, so that a crashing code becomes a failed
            result instead.
    """
    config = load_oracle(oracle_config).config
    futures: dict[Future, int] = {
        executor.submit(label_structure, config, atoms.copy()): index
        for index, atoms in enumerate(structures)
    }
    results: list[LabelResult | None] = [None] * len(futures)
    try:
        for future in as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except Exception as exc:
                raise OracleError(
                    f"structure {index}: the executor could not run the calculation "
                    f"({type(exc).__name__}: {exc}). Labels already delivered are valid; "
                    "fix the workers and run again for the rest."
                ) from exc
            results[index] = result
            if on_result is not None:
                on_result(index, result)
    finally:
        for future in futures:
            future.cancel()
    return results  # type: ignore[return-value]  # every entry was filled above
