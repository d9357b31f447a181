"""One reference calculation in this process, with every failure turned into a result.

:func:`compute_label` never raises for a failed calculation (an exception in the
calculator, an SCF that did not converge, a NaN): it returns a :class:`LabelResult`
with ``ok=False`` and the reason, so a labelling loop records it and goes on.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
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
from mlff.oracles.sanity import suspect_forces

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
    """A new folder for one type-``ase`` or ``gpaw`` calculation, under the config's
    directory (or the system's temporary folder), so parallel calculations never share
    input/output files. CP2K keeps one folder per worker's shell instead."""
    if config.type not in ("ase", "gpaw"):
        return None
    base = Path((config.kwargs.get("directory") if config.type == "ase" else config.directory)
                or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="mlff-oracle-", dir=base))


def _results(config: OracleConfig, calc: Any, work: Atoms,
             wanted: list[str]) -> dict[str, Any]:
    """The calculator's results for ``wanted`` properties (raises on any failure)."""
    # one call for every property, so that codes which compute them together
    # (every SCF code) do not run twice
    calc.calculate(work, wanted, all_changes)
    from mlff.oracles.cp2k import scf_failure_in_output

    scf = scf_failure_in_output(calc)  # ASE's CP2K does not say so itself
    if scf is not None:
        raise RuntimeError(scf)
    # GPAW: the force-consistent (free) energy, whose gradient the forces are, not the
    # zero-smearing extrapolation
    name = "free_energy" if config.type == "gpaw" else "energy"
    results: dict[str, Any] = {"energy": float(calc.get_property(name, work))}
    if "forces" in wanted:
        results["forces"] = np.array(calc.get_property("forces", work), dtype=float)
    if "stress" in wanted:
        stress = np.asarray(calc.get_property("stress", work), dtype=float)
        results["stress"] = full_3x3_to_voigt_6_stress(stress) if stress.size == 9 else stress
    return results


def _calculate(config: OracleConfig, atoms: Atoms, wanted: list[str],
               directory: Path | None) -> dict[str, Any]:
    """The results of a fresh calculator in ``directory``, closed afterwards."""
    work = atoms.copy()
    calc = make_calculator(config, None if directory is None else str(directory))
    try:
        work.calc = calc
        return _results(config, calc, work, wanted)
    finally:
        close = getattr(calc, "close", None)  # calculators holding a process (CP2K's shell)
        if callable(close):
            close()


def _calculate_cp2k(config: OracleConfig, atoms: Atoms, wanted: list[str],
                    timeout: float | None) -> dict[str, Any]:
    """The results of this worker's persistent CP2K shell; killed after ``timeout`` s.

    A failure discards the shell (the next structure starts a new one) and names its
    folder, kept for inspection.
    """
    from mlff.oracles.cp2k import CP2KFailure, discard_shell, shell_calculator

    calc = shell_calculator(config)
    timer = None
    expired = threading.Event()
    if timeout is not None:
        def expire() -> None:
            expired.set()
            calc.kill()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    work = atoms.copy()
    try:
        work.calc = calc
        return _results(config, calc, work, wanted)
    except Exception as exc:
        folder = discard_shell(config)
        where = f" (CP2K's files are kept in {folder})" if folder is not None else ""
        if expired.is_set():
            raise CP2KFailure(f"timed out after {timeout:g} s (CP2K was killed); raise the "
                              f"oracle's timeout if this structure needs longer{where}") from None
        raise CP2KFailure(f"{exc}{where}") from None
    finally:
        if timer is not None:
            timer.cancel()


def compute_label(config: OracleConfig, atoms: Atoms,
                  timeout: float | None = None) -> LabelResult:
    """Label ``atoms`` with ``config``'s calculator in this process; never raises for an
    oracle failure.

    A type-``ase`` or ``gpaw`` calculator works in a folder of its own (see
    ``docs/oracles.md``), removed after a success and kept after a failure, for
    inspection. A ``cp2k`` oracle uses this process's persistent CP2K shell.

    Args:
        config: the oracle.
        atoms: the structure (positions Å, cell rows Å); it is not modified.
        timeout: for ``cp2k`` only: seconds after which the CP2K processes are killed
            and the structure fails (other types apply ``config.timeout`` with
            :func:`mlff.oracles.isolate.run_isolated`).

    Returns:
        The :class:`LabelResult`; stress is computed only when asked for and the
        structure is periodic in all three directions. A label failing the sanity guard
        (``config.max_force``) is a failure whose reason starts with ``suspect``.
    """
    start = time.perf_counter()
    wanted = [p for p in config.wanted if p != "stress" or atoms.pbc.all()]
    directory = None
    try:
        if config.type == "cp2k":
            results = _calculate_cp2k(config, atoms, wanted, timeout)
        else:
            directory = _run_directory(config)
            results = _calculate(config, atoms, wanted, directory)
        reason = _first_non_finite(results) or suspect_forces(results, config.max_force)
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
