"""Build the ASE calculator of an oracle config, and check that it can be built.

EMT is ``ase.calculators.emt.EMT``; tblite is ``tblite.ase.TBLite`` (silent); PySCF is
:class:`mlff.oracles.pyscf_calculator.PySCFCalculator`; CP2K is
:class:`mlff.oracles.cp2k.MLFFCP2K`; GPAW is
:class:`mlff.oracles.gpaw_calculator.GPAWOracleCalculator`; type ``ase`` imports any
calculator class by its ``"module.path:ClassName"`` and passes ``kwargs`` to it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
from pathlib import Path

from ase.calculators.calculator import BaseCalculator

from mlff.errors import ConfigError
from mlff.oracles.config import OracleConfig
from mlff.oracles.requirements import check_required_code


def import_calculator_class(path: str) -> type:
    """The class named by ``"module.path:ClassName"``.

    Raises:
        ConfigError: the module cannot be imported or has no such class.
    """
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"oracle calculator {path!r}: cannot import module {module_name!r} ({exc}). "
            "Install the package that provides it, or fix the path."
        ) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"oracle calculator {path!r}: module {module_name!r} has no class "
                          f"{class_name!r}.")
    return cls


def check_calculator(config: OracleConfig) -> None:
    """Fail early, without running anything, if ``config``'s calculator cannot be built.

    The code the oracle type needs must be installed (:mod:`mlff.oracles.requirements`);
    for type ``ase`` the class must import and accept ``kwargs``; for ``pyscf`` the
    functional must be one PySCF knows.

    Raises:
        ConfigError: naming the setting or the missing code and what to do.
    """
    check_required_code(config)
    if config.type == "ase":
        cls = import_calculator_class(config.calculator or "")
        try:
            inspect.signature(cls).bind(**config.kwargs)
        except TypeError as exc:
            raise ConfigError(
                f"oracle calculator {config.calculator}: kwargs {sorted(config.kwargs)} do not "
                f"fit its constructor ({exc})."
            ) from None
        except ValueError:  # no signature to inspect (a builtin): let the calculator decide
            pass
    elif config.type == "gpaw":
        try:
            import gpaw  # noqa: F401
        except ImportError:
            raise ConfigError("the 'gpaw' oracle needs GPAW: pip install mlff[dft] (or "
                              "gpaw and gpaw-data; see docs/reference_calculations.md).") from None
    elif config.type == "pyscf":
        from pyscf.dft import libxc

        try:
            libxc.parse_xc(config.xc)
        except (KeyError, ValueError, NotImplementedError) as exc:
            raise ConfigError(f"oracle xc {config.xc!r} is not a functional PySCF knows "
                              f"({exc}); use e.g. PBE, B3LYP, PBE0 or HF.") from None


def _accepts_directory(cls: type) -> bool:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "directory" or p.kind is p.VAR_KEYWORD for p in parameters)


def make_calculator(config: OracleConfig, directory: str | None = None) -> BaseCalculator:
    """A new ASE calculator for ``config`` (energies in eV, forces eV/Å, stress eV/Å³).

    Args:
        config: the oracle.
        directory: for type ``ase``, the folder the calculator works in (its input and
            output files), replacing ``kwargs["directory"]``; ``None`` keeps the kwargs.
    """
    if config.type == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if config.type == "tblite":
        from tblite.ase import TBLite

        return TBLite(method=config.method, accuracy=config.accuracy,
                      electronic_temperature=config.electronic_temperature,
                      max_iterations=config.max_iterations, charge=config.charge,
                      multiplicity=config.spin + 1, verbosity=0)
    if config.type == "pyscf":
        from mlff.oracles.pyscf_calculator import PySCFCalculator

        return PySCFCalculator(xc=config.xc, basis=config.basis, charge=config.charge,
                               spin=config.spin, conv_tol=config.conv_tol,
                               max_cycle=config.max_cycle)
    if config.type == "cp2k":
        import tempfile

        from mlff.oracles.cp2k import MLFFCP2K

        if directory is None:
            base = config.directory or tempfile.gettempdir()
            Path(base).mkdir(parents=True, exist_ok=True)
            directory = tempfile.mkdtemp(prefix="mlff-cp2k-", dir=base)
        return MLFFCP2K(config, Path(directory).resolve())
    if config.type == "gpaw":
        from mlff.oracles.gpaw_calculator import GPAWOracleCalculator

        return GPAWOracleCalculator(config, directory or config.directory)
    cls = import_calculator_class(config.calculator or "")
    kwargs = dict(config.kwargs)
    if directory is not None and _accepts_directory(cls):
        kwargs["directory"] = directory
    return cls(**kwargs)


def code_versions(config: OracleConfig) -> dict[str, str]:
    """Versions of ASE and of the package that computes ``config``'s labels."""
    if config.type == "cp2k":
        from mlff.oracles.cp2k import cp2k_version

        return {"ase": _package_version("ase"), "cp2k": cp2k_version()}
    package = {"emt": "ase", "tblite": "tblite", "pyscf": "pyscf",
               "gpaw": "gpaw"}.get(config.type)
    if package is None:
        package = (config.calculator or "").split(".", 1)[0].split(":", 1)[0]
    return {name: _package_version(name) for name in dict.fromkeys(("ase", package))}


@functools.lru_cache(maxsize=None)
def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
