"""The ``gpaw`` oracle: GPAW (projector augmented waves), plane waves or LCAO.

:class:`GPAWOracleCalculator` builds a GPAW calculator for each structure (its k-point
mesh depends on the cell and periodicity) and keeps it while only positions change (MD),
so GPAW reuses its wave functions. Its energy is GPAW's ``free_energy``, the
force-consistent energy whose gradient the forces are (the ``energy`` GPAW extrapolates
to zero smearing is not). An SCF that does not converge in ``max_scf`` iterations raises
GPAW's ``KohnShamConvergenceError``.

MPI: with ``ranks > 1`` the oracle runs each calculation as ``mpiexec -n ranks python
-m mlff.oracles._child`` (see :func:`mpi_launcher`), GPAW's own way of running in
parallel; a calculator made in this process runs on one rank.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mlff.oracles.config import OracleConfig


def gpaw_parameters(config: OracleConfig, atoms: Atoms, txt: str | None) -> dict[str, Any]:
    """GPAW's keyword arguments for ``config`` and ``atoms`` (energies eV).

    Args:
        config: a ``gpaw`` oracle.
        atoms: the structure (k-points only for a structure periodic in 3D).
        txt: GPAW's log file (``None``: no log).
    """
    from mlff.oracles.cp2k import kpoint_mesh

    if config.mode == "pw":
        mode: dict[str, Any] = {"name": "pw", "ecut": config.cutoff}
        basis = {}
    else:
        mode = {"name": "lcao"}
        basis = {"basis": config.basis_set}
    mesh = kpoint_mesh(config, atoms)
    parameters: dict[str, Any] = {
        "mode": mode, "xc": config.xc, "charge": config.charge,
        "occupations": {"name": "fermi-dirac", "width": config.smearing},
        "maxiter": config.max_scf,
        "convergence": {"density": config.eps_scf},
        "mixer": {"beta": config.mixing_alpha},
        "txt": txt, **basis,
    }
    if mesh is not None:
        parameters["kpts"] = {"size": tuple(mesh), "gamma": True}
    if config.spin:
        parameters["spinpol"] = True
        magmoms = [0.0] * len(atoms)
        if magmoms:
            magmoms[0] = float(config.spin)
        parameters["magmoms"] = magmoms
    return parameters


def mpi_launcher(config: OracleConfig) -> list[str]:
    """The MPI launcher prefix for ``ranks > 1``: ``command``, else ``mpiexec -n ranks``
    with the ``mpiexec`` next to this Python (the environment's MPI, which GPAW was built
    against there) if there is one."""
    if config.command:
        return shlex.split(config.command)
    local = Path(sys.executable).parent / "mpiexec"
    return [str(local) if local.is_file() else "mpiexec", "-n", str(config.ranks)]


class GPAWOracleCalculator(Calculator):
    """An ASE calculator running GPAW with an oracle's settings.

    Args:
        config: a ``gpaw`` oracle.
        directory: folder of GPAW's log ``gpaw.txt``; ``None``: no log.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, config: OracleConfig, directory: str | None = None) -> None:
        super().__init__(directory=directory or ".")
        self.config = config
        self._log = directory is not None  # no folder given: no log file
        self._gpaw: Any = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Energy, free energy, forces and (PW, 3D-periodic) stress of ``atoms``."""
        from gpaw import GPAW

        super().calculate(atoms, properties, system_changes)
        if self._gpaw is None or {"numbers", "cell", "pbc"} & set(system_changes):
            txt = None
            if self._log:
                Path(self.directory).mkdir(parents=True, exist_ok=True)
                txt = str(Path(self.directory) / "gpaw.txt")
            self._gpaw = GPAW(**gpaw_parameters(self.config, self.atoms, txt))
        work = self.atoms.copy()
        work.calc = self._gpaw
        work.get_potential_energy()
        # energy is the force-consistent free energy (as in every label and MD frame),
        # not GPAW's extrapolation to zero smearing
        free = float(self._gpaw.get_property("free_energy", work))
        self.results["energy"] = self.results["free_energy"] = free
        if "forces" in properties:
            self.results["forces"] = work.get_forces()
        if "stress" in properties and work.pbc.all():
            self.results["stress"] = work.get_stress(voigt=True)
