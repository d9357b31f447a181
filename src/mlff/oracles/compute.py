"""One reference calculation in this process, with every failure turned into a result.

:func:`compute_label` never raises for a failed calculation (an exception in the
calculator, an SCF that did not converge, a NaN): it returns a :class:`LabelResult`
with ``ok=False`` and the reason, so a labelling loop records it and goes on.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from mlff.oracles.calculators import make_calculator
from mlff.oracles.config import OracleConfig

_MAX_REASON = 600


@dataclass
class LabelResult:
    """The outcome of labelling one structure.

    Attributes:
        ok: whether the reference labels were computed.
        atoms: when ``ok``, a copy of the input structure (info and arrays kept) with a
            ``SinglePointCalculator`` holding ``energy`` (eV), ``forces`` ((N, 3) eV/Å)
            and, for structures periodic in 3D when asked for, ``stress`` (Voigt
            ``xx yy zz yz xz xy``, eV/Å³, ASE sign); ``None`` on failure.
        reason: why it failed (exception type and message, or timeout); ``None`` if ok.
        wall_time: wall-clock time of the calculation, s.
    """

    ok: bool
    atoms: Atoms | None
    reason: str | None
    wall_time: float


def describe_exception(exc: BaseException) -> str:
    """``"Type: message"`` on one line, shortened to a readable length."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > _MAX_REASON:
        text = text[:_MAX_REASON] + " ..."
    return f"{type(exc).__name__}: {text}"


def _first_non_finite(results: dict[str, np.ndarray | float]) -> str | None:
    for name, value in results.items():
        array = np.asarray(value, dtype=float)
        if not np.isfinite(array).all():
            where = ""
            if name == "forces":
                atom = int(np.argwhere(~np.isfinite(array).all(axis=1))[0, 0])
                where = f" of atom {atom}"
            return f"the oracle returned a non-finite {name}{where} (NaN or inf)"
    return None


def _run_directory(config: OracleConfig) -> Path | None:
    """A new folder for one type-``ase`` calculation, under ``kwargs["directory"]`` (or the
    system's temporary folder), so parallel calculations never share input/output files."""
    if config.type != "ase":
        return None
    base = Path(config.kwargs.get("directory") or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="mlff-oracle-", dir=base))


def _calculate(config: OracleConfig, atoms: Atoms, wanted: list[str],
               directory: Path | None) -> dict[str, Any]:
    """The calculator's results for ``wanted`` properties (raises on any failure)."""
    work = atoms.copy()
    calc = make_calculator(config, None if directory is None else str(directory))
    try:
        work.calc = calc
        # one call for every property, so that codes which compute them together
        # (every SCF code) do not run twice
        calc.calculate(work, wanted, all_changes)
        results: dict[str, Any] = {"energy": float(calc.get_property("energy", work))}
        if "forces" in wanted:
            results["forces"] = np.array(calc.get_property("forces", work), dtype=float)
        if "stress" in wanted:
            stress = np.asarray(calc.get_property("stress", work), dtype=float)
            results["stress"] = full_3x3_to_voigt_6_stress(stress) if stress.size == 9 else stress
        return results
    finally:
        close = getattr(calc, "close", None)  # calculators holding a process (CP2K's shell)
        if callable(close):
            close()


def compute_label(config: OracleConfig, atoms: Atoms) -> LabelResult:
    """Label ``atoms`` with ``config``'s calculator in this process; never raises for an
    oracle failure.

    A type-``ase`` calculator works in a folder of its own (see ``docs/oracles.md``),
    removed after a success and kept after a failure, for inspection.

    Args:
        config: the oracle; ``config.timeout`` is not applied here (see
            :func:`mlff.oracles.isolate.run_isolated`).
        atoms: the structure (positions Å, cell rows Å); it is not modified.

    Returns:
        The :class:`LabelResult`; stress is computed only when asked for and the
        structure is periodic in all three directions.
    """
    start = time.perf_counter()
    wanted = [p for p in config.wanted if p != "stress" or atoms.pbc.all()]
    directory = None
    try:
        directory = _run_directory(config)
        results = _calculate(config, atoms, wanted, directory)
        reason = _first_non_finite(results)
    except Exception as exc:  # any failure of any calculator is a result, not a crash
        reason = describe_exception(exc)
    wall_time = time.perf_counter() - start
    if directory is not None:
        if reason is None or not any(directory.iterdir()):
            shutil.rmtree(directory, ignore_errors=True)
        else:
            reason += f" (the calculation's files are kept in {directory})"
    if reason is not None:
        return LabelResult(False, None, reason, wall_time)
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(labelled, **results)
    return LabelResult(True, labelled, None, wall_time)
