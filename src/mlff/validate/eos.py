"""Equation of state of a crystal: energies at isotropically scaled volumes, a third-order
Birch-Murnaghan fit, and the structure at the fitted equilibrium volume.

    E(V) = E0 + 9 V0 B0 / 16 · { [x − 1]³ B0' + [x − 1]² (6 − 4 x) },  x = (V0 / V)^(2/3)

Units: volumes Å³/atom, energies eV/atom, B0 in GPa. The cell shape is kept (isotropic
scaling, so c/a of a non-cubic crystal is not optimised); internal positions are relaxed
at each volume when the cell holds more than one atom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.units import GPa
from scipy.optimize import curve_fit

from mlff.errors import SimulationError
from mlff.validate.geometry import relax


def birch_murnaghan(volume: np.ndarray, e0: float, v0: float, b0: float, bp: float) -> np.ndarray:
    """Third-order Birch-Murnaghan energy (eV/atom) at ``volume`` (Å³/atom); ``b0`` in eV/Å³."""
    x = (v0 / volume) ** (2.0 / 3.0)
    return e0 + 9.0 * v0 * b0 / 16.0 * ((x - 1.0) ** 3 * bp + (x - 1.0) ** 2 * (6.0 - 4.0 * x))


@dataclass
class EOSFit:
    """A fitted equation of state.

    Attributes:
        volumes: (P,) sampled volumes, Å³/atom.
        energies: (P,) energies at those volumes, eV/atom.
        v0: equilibrium volume, Å³/atom.
        e0: equilibrium energy, eV/atom.
        bulk_modulus_GPa: B0, GPa.
        bulk_modulus_derivative: B0' (dimensionless).
        rms_residual_meV: RMS of the fit residuals, meV/atom.
    """

    volumes: np.ndarray
    energies: np.ndarray
    v0: float
    e0: float
    bulk_modulus_GPa: float
    bulk_modulus_derivative: float
    rms_residual_meV: float

    def curve(self, volumes: np.ndarray) -> np.ndarray:
        """The fitted energy (eV/atom) at ``volumes`` (Å³/atom)."""
        return birch_murnaghan(volumes, self.e0, self.v0, self.bulk_modulus_GPa * GPa,
                               self.bulk_modulus_derivative)


def fit_birch_murnaghan(volumes: np.ndarray, energies: np.ndarray) -> EOSFit:
    """Least-squares Birch-Murnaghan fit of energies (eV/atom) against volumes (Å³/atom).

    Raises:
        SimulationError: the points have no minimum to fit (e.g. a model whose energy
            falls monotonically with volume).
    """
    volumes, energies = np.asarray(volumes, float), np.asarray(energies, float)
    a, b, c = np.polyfit(volumes, energies, 2)
    if a <= 0:
        raise SimulationError(
            "the energy-volume curve has no minimum in the sampled range (it is concave): the "
            "calculator predicts no stable lattice constant near the given structure.")
    v_guess = -b / (2.0 * a)
    guess = (float(np.polyval((a, b, c), v_guess)), float(v_guess), float(2.0 * a * v_guess), 4.0)
    try:
        params, _ = curve_fit(birch_murnaghan, volumes, energies, p0=guess, maxfev=20000)
    except RuntimeError as exc:
        raise SimulationError(f"the Birch-Murnaghan fit did not converge ({exc}).") from None
    residual = energies - birch_murnaghan(volumes, *params)
    e0, v0, b0, bp = (float(p) for p in params)
    return EOSFit(volumes, energies, v0, e0, b0 / GPa, bp,
                  1000.0 * float(np.sqrt(np.mean(residual**2))))


def scaled(atoms: Atoms, volume_per_atom: float) -> Atoms:
    """A copy of ``atoms`` scaled isotropically (atoms follow the cell) to the given volume."""
    out = atoms.copy()
    factor = (volume_per_atom * len(atoms) / abs(atoms.cell.volume)) ** (1.0 / 3.0)
    out.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return out


def energy_per_atom(atoms: Atoms, calculator: BaseCalculator, relax_fmax: float,
                    relax_steps: int) -> tuple[float, Atoms]:
    """Energy per atom (eV) of a copy of ``atoms``, positions relaxed when it has more than
    one atom; returns the energy and the (relaxed) copy."""
    atoms = atoms.copy()
    if len(atoms) > 1:
        relax(atoms, calculator, relax_fmax, relax_steps)
    else:
        atoms.calc = calculator
    return float(atoms.get_potential_energy()) / len(atoms), atoms


def equation_of_state(
    crystal: Atoms,
    calculator: BaseCalculator,
    points: int = 11,
    volume_range: float = 0.06,
    relax_fmax: float = 0.005,
    relax_steps: int = 200,
) -> tuple[EOSFit, Atoms]:
    """Fit the EOS of ``crystal`` around its volume, re-centred once on the fitted minimum
    when that lies outside the sampled range; return the fit and the equilibrium crystal.

    Args:
        crystal: a 3D-periodic cell (positions Å, cell rows Å).
        calculator: any ASE calculator.
        points: number of volumes, evenly spaced over V·(1 ± ``volume_range``).
        volume_range: half-width of the sampled volumes, relative.
        relax_fmax: force threshold of the internal relaxations, eV/Å.
        relax_steps: steps allowed per relaxation.
    """
    centre = abs(crystal.cell.volume) / len(crystal)
    for _ in range(2):
        volumes = centre * np.linspace(1.0 - volume_range, 1.0 + volume_range, points)
        energies = [energy_per_atom(scaled(crystal, v), calculator, relax_fmax, relax_steps)[0]
                    for v in volumes]
        fit = fit_birch_murnaghan(volumes, np.asarray(energies))
        if volumes[1] <= fit.v0 <= volumes[-2]:
            break
        centre = fit.v0
    _, equilibrium = energy_per_atom(scaled(crystal, fit.v0), calculator, relax_fmax, relax_steps)
    equilibrium.calc = None
    return fit, equilibrium
