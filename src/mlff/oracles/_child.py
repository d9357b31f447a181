"""Entry point of the child process of :func:`mlff.oracles.isolate.run_isolated`.

``python -m mlff.oracles._child REQUEST RESULT``: reads the pickled oracle config and
structure from REQUEST, labels it, and writes the pickled :class:`LabelResult` to
RESULT. Not imported by the package (``-m`` would then warn that it was imported twice).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

_PARENT_POLL_S = 0.5


def _watch_parent(parent: int) -> None:
    """Kill this process group (the calculation and its helpers) when the parent dies."""
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)


def _mpi_rank() -> int:
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def main(argv: list[str]) -> int:
    """Label the structure in ``argv[0]``; write the result to ``argv[1]``."""
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    request, response = Path(argv[0]), Path(argv[1])
    with request.open("rb") as stream:
        job = pickle.load(stream)
    sys.path.extend(p for p in job["sys_path"] if p not in sys.path)

    from mlff.oracles.compute import compute_label

    result = compute_label(job["config"], job["atoms"])
    if _mpi_rank() != 0:  # under mpiexec every rank computed; rank 0 reports
        return 0
    partial = response.with_suffix(".partial")
    with partial.open("wb") as stream:
        pickle.dump(result, stream)
    partial.replace(response)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
