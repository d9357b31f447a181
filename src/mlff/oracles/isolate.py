"""Run one reference calculation in a child process that is killed when it runs too long.

The child is a fresh Python interpreter (``python -m mlff.oracles._child``), started in
its own session, so a timeout kills its whole process group: the calculation and any
program it launched (an ``mpirun`` of a DFT code, say). A fresh interpreter is safe
inside any executor: a process-pool worker, or a Dask worker (which, being a daemonic
process, may not start ``multiprocessing`` children). The child also watches its
parent and kills its group if the parent dies, so no calculation is left orphaned.

Costs about the import time of ``mlff`` per structure, which is why it is only used
when a timeout is set.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ase import Atoms

from mlff.oracles.compute import LabelResult, describe_exception
from mlff.oracles.config import OracleConfig

_STDERR_TAIL = 400


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def _stderr_tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    tail = " | ".join(lines[-3:])
    return tail[-_STDERR_TAIL:]


def _child_environment(config: OracleConfig, mpi: bool) -> dict[str, str] | None:
    """The child's environment: for the DFT codes and MPI children, ``config.threads``
    OpenMP threads per rank (BLAS threads too) and OpenMPI allowed as root; otherwise
    ``None`` (this process's environment)."""
    from mlff.oracles.cp2k import process_environment

    if not mpi and config.type not in ("cp2k", "gpaw"):
        return None
    env = process_environment(config.threads)
    if mpi and config.type == "gpaw":  # GPAW's own MPI (its C extension), not mpi4py
        env.setdefault("GPAW_MPI_BACKEND", "cgpaw")
    return env


def run_isolated(config: OracleConfig, atoms: Atoms, timeout: float | None,
                 launcher: list[str] | None = None) -> LabelResult:
    """Label ``atoms`` in a child process, killed after ``timeout`` seconds.

    Args:
        config: the oracle.
        atoms: the structure; it is not modified.
        timeout: wall-clock limit, s (child start-up included); ``None``: no limit.
        launcher: a command the child runs under (``["mpiexec", "-n", "4"]``: every
            rank runs the child, rank 0 writes the result).

    Returns:
        The child's :class:`LabelResult`; on a timeout or a crash of the child (a
        segmentation fault in a compiled code, say), ``ok=False`` with the reason.
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlff-isolate-") as folder:
        request, response, stderr = (Path(folder) / n for n in ("request.pkl", "result.pkl",
                                                                 "stderr.txt"))
        with request.open("wb") as stream:  # the copy has no calculator
            pickle.dump({"config": config, "atoms": atoms.copy(), "sys_path": sys.path}, stream)
        with stderr.open("wb") as err:
            try:
                process = subprocess.Popen(
                    [*(launcher or []), sys.executable, "-m", "mlff.oracles._child",
                     str(request), str(response)],
                    stdin=subprocess.DEVNULL, stderr=err, start_new_session=True,
                    env=_child_environment(config, mpi=launcher is not None),
                )
            except OSError as exc:  # no process could be started (limits, memory)
                return LabelResult(False, None, "could not start the oracle process: "
                                   f"{describe_exception(exc)}", time.perf_counter() - start)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                return LabelResult(False, None, f"timed out after {timeout:g} s (the "
                                   "calculation was killed); raise the oracle's timeout if "
                                   "this structure needs longer", time.perf_counter() - start)
            except BaseException:  # interrupted: never leave the calculation running
                _kill_group(process)
                raise
        if response.is_file():
            with response.open("rb") as stream:
                return pickle.load(stream)
        code = process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = _stderr_tail(stderr)
        return LabelResult(False, None, f"the oracle process {how} before returning a result"
                           + (f": {tail}" if tail else ""), time.perf_counter() - start)
