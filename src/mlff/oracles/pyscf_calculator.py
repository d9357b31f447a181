"""An ASE calculator for Kohn-Sham DFT on molecules with PySCF: energy and analytic forces.

PySCF works in Hartree and Bohr; this calculator converts at its boundary with
``ase.units`` (energy in eV, forces in eV/Å). Forces include the response of the
integration grid to the atoms' motion, so they are the exact gradient of the energy
(to the SCF convergence) rather than an approximation to it.

Examples:
    >>> from ase.build import molecule                                  # doctest: +SKIP
    >>> h2 = molecule("H2")                                             # doctest: +SKIP
    >>> h2.calc = PySCFCalculator(xc="PBE", basis="sto-3g")             # doctest: +SKIP
    >>> h2.get_potential_energy()  # eV                                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import (
    CalculationFailed,
    Calculator,
    CalculatorSetupError,
    all_changes,
)
from ase.units import Bohr, Hartree


class PySCFCalculator(Calculator):
    """Restricted (``spin=0``) or unrestricted Kohn-Sham DFT for non-periodic structures.

    Parameters (keyword arguments):
        xc: exchange-correlation functional, any name PySCF knows (``"PBE"``,
            ``"B3LYP"``; ``"HF"`` for Hartree-Fock).
        basis: basis set name (``"def2-SVP"``, ``"sto-3g"``, ...).
        charge: total charge, e.
        spin: number of unpaired electrons (2S); 0 runs RKS, more runs UKS.
        conv_tol: SCF energy convergence threshold, Hartree.
        max_cycle: SCF iterations before giving up.
        grid_response: include the grid response in the forces (default ``True``).

    Results: ``energy`` (eV) and ``forces`` ((N, 3), eV/Å).

    Raises (from ``calculate``):
        CalculatorSetupError: the structure is periodic in some direction.
        CalculationFailed: the SCF did not converge within ``max_cycle`` iterations.
    """

    implemented_properties = ["energy", "forces"]
    default_parameters: dict[str, Any] = {
        "xc": "PBE",
        "basis": "def2-SVP",
        "charge": 0,
        "spin": 0,
        "conv_tol": 1e-9,
        "max_cycle": 50,
        "grid_response": True,
    }

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        """Run the SCF (and the gradient when forces are asked for) on ``atoms``."""
        super().calculate(atoms, properties, system_changes)
        from pyscf import dft, gto

        atoms = self.atoms
        p = self.parameters
        if atoms.pbc.any():
            raise CalculatorSetupError(
                f"PySCFCalculator: the structure {atoms.get_chemical_formula()} is periodic "
                f"(pbc={atoms.pbc.tolist()}); this calculator handles molecules only. Set pbc "
                "to False for a molecule, or label periodic structures with tblite or a "
                "plane-wave code (oracle type 'ase')."
            )
        mol = gto.M(
            atom=list(zip(atoms.get_chemical_symbols(), atoms.positions.tolist())),
            unit="Angstrom", basis=p["basis"], charge=int(p["charge"]), spin=int(p["spin"]),
            verbose=0,
        )
        mf = dft.RKS(mol) if int(p["spin"]) == 0 else dft.UKS(mol)
        mf.xc = p["xc"]
        mf.conv_tol = float(p["conv_tol"])
        mf.max_cycle = int(p["max_cycle"])
        energy = mf.kernel()
        if not mf.converged:
            raise CalculationFailed(
                f"PySCF {p['xc']}/{p['basis']} SCF of {atoms.get_chemical_formula()} did not "
                f"converge in max_cycle={p['max_cycle']} iterations (conv_tol="
                f"{float(p['conv_tol']):g} Ha); raise max_cycle, or check the geometry, "
                "charge and spin."
            )
        self.results["energy"] = float(energy) * Hartree
        if "forces" in properties:
            gradient = mf.nuc_grad_method()
            gradient.grid_response = bool(p["grid_response"])
            self.results["forces"] = -np.asarray(gradient.kernel()) * (Hartree / Bohr)
