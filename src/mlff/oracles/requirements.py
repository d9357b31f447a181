"""The code each oracle type needs installed, checked before any structure is labelled.

Every oracle type declares, in :data:`REQUIRED_CODE`, what it needs: Python modules
(imported to check them, so that a broken install counts as missing too) and programs
(found on ``PATH``), each with the command that installs it. :func:`check_required_code`
stops with that command before a frame is spent, instead of storing every frame as
failed. A new oracle type adds one entry: a tuple of :class:`Requirement`, or a function
of its config for needs that depend on the settings (a configurable program name).
"""

from __future__ import annotations

import importlib
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mlff.errors import ConfigError

if TYPE_CHECKING:
    from mlff.oracles.config import OracleConfig


@dataclass(frozen=True)
class Requirement:
    """One piece of code an oracle needs.

    Attributes:
        kind: ``module`` (a Python module, imported) or ``binary`` (a program on PATH).
        name: the module (``tblite.ase``) or program (``cp2k_shell.psmp``).
        install: how to install it, shown when it is missing.
    """

    kind: Literal["module", "binary"]
    name: str
    install: str

    def is_available(self) -> bool:
        """Whether the module imports / the program is found on PATH."""
        if self.kind == "binary":
            return shutil.which(self.name) is not None
        try:
            importlib.import_module(self.name)
        except Exception:  # noqa: BLE001 - any failure to import means it cannot be used
            return False
        return True

    def describe(self) -> str:
        """``the Python module tblite.ase`` / ``the program cp2k_shell.psmp``."""
        return f"the {'Python module' if self.kind == 'module' else 'program'} {self.name}"


def module(name: str, install: str) -> Requirement:
    """A Python module the oracle imports."""
    return Requirement("module", name, install)


def binary(command: str, install: str) -> Requirement:
    """The program a command line starts (its first word, e.g. of ``mpirun -np 4 cp2k``)."""
    return Requirement("binary", shlex.split(command)[0], install)


def _extra(name: str, package: str) -> str:
    return (f"pip install '.[{name}]' in the mlff repository (or: pip install {package})")


_CP2K_INSTALL = "apt-get install cp2k (Debian/Ubuntu), or your cluster's CP2K module"
_GPAW_INSTALL = ("apt-get install libxc-dev libopenblas-dev libfftw3-dev, then "
                 "CC=g++ pip install gpaw gpaw-data (or: make install-dft)")

#: what each oracle type needs; a function receives the config
Needs = Sequence[Requirement] | Callable[["OracleConfig"], Sequence[Requirement]]
REQUIRED_CODE: dict[str, Needs] = {
    "emt": (),
    "tblite": (module("tblite.ase", _extra("xtb", "tblite")),),
    "pyscf": (module("pyscf", _extra("pyscf", "pyscf")),),
    "ase": (),  # the calculator's module is imported by check_calculator, with its own message
    "cp2k": lambda config: (
        (binary(config.command, _CP2K_INSTALL),) if config.command else
        (binary("cp2k_shell.psmp", _CP2K_INSTALL),)
        + ((binary("mpirun", _CP2K_INSTALL),) if config.ranks > 1 else ())),
    "gpaw": lambda config: (module("gpaw", _GPAW_INSTALL),) + (
        (binary(config.command or "mpiexec", "pip install mpich (or your MPI's mpiexec)"),)
        if config.ranks > 1 else ()),
}


def required_code(config: OracleConfig) -> list[Requirement]:
    """The code ``config``'s oracle type needs (see :data:`REQUIRED_CODE`)."""
    needs = REQUIRED_CODE.get(config.type, ())
    return list(needs(config) if callable(needs) else needs)


def missing_code(config: OracleConfig) -> list[Requirement]:
    """The requirements of ``config`` that are not available here."""
    return [r for r in required_code(config) if not r.is_available()]


def check_required_code(config: OracleConfig) -> None:
    """Raise if the code of ``config``'s oracle is not installed here.

    Raises:
        ConfigError: naming each missing module or program and how to install it.
    """
    missing = missing_code(config)
    if missing:
        lines = "; ".join(f"{r.describe()} ({r.install})" for r in missing)
        raise ConfigError(
            f"the '{config.type}' oracle needs code that is not installed here: {lines}. "
            f"Nothing was labelled."
        )
