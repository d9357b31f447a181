"""The :class:`Oracle`: one reference labeller behind one interface, whatever computes it.

Examples:
    >>> from ase.build import bulk
    >>> oracle = load_oracle({"type": "emt"})
    >>> result = oracle.label(bulk("Cu", cubic=True))
    >>> result.ok, sorted(result.atoms.calc.results)
    (True, ['energy', 'forces', 'stress'])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.oracles.calculators import check_calculator, code_versions, make_calculator
from mlff.oracles.compute import LabelResult, compute_label
from mlff.oracles.config import (
    COMMON_FIELDS,
    FIELDS_BY_TYPE,
    OracleConfig,
    load_oracle_config,
)
from mlff.oracles.isolate import run_isolated


class Oracle:
    """A reference labeller built from an :class:`OracleConfig`.

    It holds only its (picklable) config; every calculation builds a fresh calculator.

    Attributes:
        config: the validated settings.
    """

    def __init__(self, config: OracleConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """Short name for provenance: ``emt``, ``tblite:GFN2-xTB``, ``pyscf:PBE/def2-SVP``,
        ``ase:ase.calculators.vasp:Vasp``."""
        c = self.config
        if c.type == "tblite":
            return f"tblite:{c.method}"
        if c.type == "pyscf":
            return f"pyscf:{c.xc}/{c.basis}"
        if c.type == "ase":
            return f"ase:{c.calculator}"
        if c.type == "cp2k":
            return f"cp2k:{c.xc}{'-D3' if c.dispersion else ''}/{c.basis_set}"
        if c.type == "gpaw":
            return f"gpaw:{c.xc}/" + (f"pw{c.cutoff:g}" if c.mode == "pw" else f"lcao-{c.basis_set}")
        return c.type

    @property
    def settings(self) -> dict[str, Any]:
        """The settings of this oracle's type (defaults included) as plain JSON data;
        ``load_oracle(oracle.settings)`` rebuilds the oracle."""
        data = self.config.model_dump(mode="json", fallback=repr)
        own = COMMON_FIELDS | FIELDS_BY_TYPE[self.config.type]
        return {name: value for name, value in data.items() if name in own}

    @property
    def versions(self) -> dict[str, str]:
        """Installed versions of ASE and of the code that computes the labels."""
        return code_versions(self.config)

    def provenance(self, iteration: int, **extra: Any) -> dict[str, Any]:
        """The provenance of a label from this oracle, as :class:`~mlff.active.store.
        LabelStore` stores it: ``iteration``, ``oracle`` (name), ``oracle_settings``,
        ``oracle_versions`` and ``extra``."""
        return {"iteration": int(iteration), "oracle": self.name,
                "oracle_settings": self.settings, "oracle_versions": self.versions, **extra}

    def make_calculator(self) -> BaseCalculator:
        """A new ASE calculator computing this oracle's labels (eV, eV/Å, eV/Å³)."""
        return make_calculator(self.config)

    def label(self, atoms: Atoms) -> LabelResult:
        """Label one structure; never raises for a failed calculation.

        Without ``timeout`` the calculation runs in this process; with it, in a child
        process killed when the time is up. CP2K always runs in this process's
        persistent shell (killed when the time is up); GPAW with ``ranks > 1`` runs in
        a child process under ``mpiexec``.

        Args:
            atoms: the structure (positions Å, cell rows Å); it is not modified.

        Returns:
            ``ok`` with a labelled copy, or ``ok=False`` with the reason (exception in the
            calculator, SCF not converged, NaN, timeout); ``wall_time`` in s.
        """
        c = self.config
        if c.type == "cp2k":
            return compute_label(c, atoms, timeout=c.timeout)
        if c.type == "gpaw" and c.ranks > 1:
            from mlff.oracles.gpaw_calculator import mpi_launcher

            return run_isolated(c, atoms, c.timeout, launcher=mpi_launcher(c))
        if c.timeout is None:
            return compute_label(c, atoms)
        return run_isolated(c, atoms, c.timeout)

    def __repr__(self) -> str:
        return f"Oracle({self.name!r})"


def load_oracle(config: str | Path | dict[str, Any] | OracleConfig) -> Oracle:
    """An :class:`Oracle` from a YAML file, a dict of settings, or an :class:`OracleConfig`.

    The calculator is checked without running it: a type ``ase`` class must import and
    accept its ``kwargs``; a PySCF functional must exist.

    Raises:
        ConfigError: the file or a setting is invalid, naming it and what to do.
    """
    oracle_config = load_oracle_config(config)
    check_calculator(oracle_config)
    return Oracle(oracle_config)
