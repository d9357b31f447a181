"""Check 5a, crystal properties, each for the model and (when given) the reference, every
calculator at its own equilibrium volume:

- equation of state (:mod:`mlff.validate.eos`): equilibrium lattice parameters (Å, from
  ASE's Bravais-lattice analysis of the cell: the conventional ``a`` for cubic lattices),
  volume (Å³/atom), cohesive-scale energy (eV/atom), bulk modulus B0 (GPa) and B0';
- elastic constants C_ij (GPa, Voigt order xx yy zz yz xz xy, Cartesian axes of the given
  cell) by central differences of the stress under ± ``elastic_strain``, internal
  positions relaxed; for cubic crystals C11, C12, C44 are the averages over equivalent
  entries, and B = (C11 + 2 C12) / 3;
- vacancy formation energy (eV): E_f = E(N−1, relaxed) − (N−1)/N · E(N) in a supercell of
  N atoms (elemental crystals; for compounds the removal energy E(N−1) − E(N) of one atom
  of each element);
- surface energies (J/m², 1 eV/Å² = 16.02 J/m²): γ = (E_slab − N_slab · e_bulk) / (2 A)
  for relaxed symmetric slabs cut from the conventional standard cell (spglib) with the
  given Miller indices.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import surface
from ase.calculators.calculator import BaseCalculator
from ase.units import GPa, J, m

from mlff.errors import ConfigError, SimulationError
from mlff.validate.eos import EOSFit, equation_of_state
from mlff.validate.figures import MODEL_COLOR, REFERENCE_COLOR, FigureSink, new_figure
from mlff.validate.geometry import isotropic_repeat, relax
from mlff.validate.result import CheckResult, Headline, Table, compare, fmt

NAME = "crystal"
TITLE = "Crystal: equation of state, elastic constants, vacancy and surfaces"
J_PER_M2 = J / m**2  # 1 J/m² in eV/Å²
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
CUBIC = ("CUB", "FCC", "BCC")
PARTS = ("eos", "elastic", "vacancy", "surfaces")


@dataclass
class CrystalOptions:
    """Settings of the crystal check (tolerances are for the summary's verdicts).

    Attributes:
        parts: which properties to compute, out of ``eos``, ``elastic``, ``vacancy``,
            ``surfaces`` (the EOS is always computed: the others use its volume).
        eos_points: volumes sampled.
        eos_range: half-width of the sampled volumes, relative (0.06: ±6 %).
        elastic_strain: strain of the central differences.
        vacancy_supercell: repetition of the cell for the vacancy; default the smallest
            (n, n, n) with at least ``vacancy_min_atoms`` atoms.
        vacancy_min_atoms: see ``vacancy_supercell``.
        surfaces: Miller indices (of the conventional standard cell).
        surface_layers: equivalent layers of each slab.
        vacuum: vacuum on each side of a slab, Å.
        surface_symprec: distance tolerance (Å) of the symmetry search that finds the
            conventional cell the slabs are cut from; an equilibrium relaxed by a noisy
            calculator (a DFT code's forces of a few meV/Å on the perfect crystal) keeps
            atoms a few mÅ off their sites, and a tighter tolerance then finds a lower
            symmetry, whose cell gives the Miller indices another meaning.
        relax_fmax: force threshold of every relaxation, eV/Å.
        relax_steps: steps allowed per relaxation.
        relax_defects: relax the vacancy cells and the slabs; ``False`` (for a costly
            reference such as DFT, where a relaxation costs tens of calls on the largest
            cells) compares the unrelaxed energies instead.
        lattice_tolerance: accepted relative deviation of the lattice parameters.
        bulk_modulus_tolerance: accepted relative deviation of B0.
        elastic_tolerance: accepted relative deviation of the elastic constants.
        vacancy_tolerance_eV: accepted deviation of the vacancy formation energy, eV.
        surface_tolerance: accepted relative deviation of the surface energies.
    """

    parts: tuple[str, ...] = PARTS
    eos_points: int = 11
    eos_range: float = 0.06
    elastic_strain: float = 0.005
    vacancy_supercell: tuple[int, int, int] | None = None
    vacancy_min_atoms: int = 100
    surfaces: tuple[tuple[int, int, int], ...] = ((1, 0, 0), (1, 1, 0), (1, 1, 1))
    surface_layers: int = 8
    vacuum: float = 8.0
    surface_symprec: float = 0.01
    relax_fmax: float = 0.005
    relax_steps: int = 300
    relax_defects: bool = True
    lattice_tolerance: float = 0.005
    bulk_modulus_tolerance: float = 0.05
    elastic_tolerance: float = 0.10
    vacancy_tolerance_eV: float = 0.05
    surface_tolerance: float = 0.10

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ConfigError(f"crystal check: unknown part(s) {unknown}; choose from "
                              f"{', '.join(PARTS)}.")
        if self.eos_points < 5:
            raise ConfigError(f"crystal check: eos_points = {self.eos_points}; give at least 5.")
        for index in self.surfaces:
            if len(index) != 3 or not any(index):
                raise ConfigError(f"crystal check: Miller index {index} is not three integers "
                                  "with at least one non-zero.")


@dataclass
class CrystalProperties:
    """The properties of one calculator (units in the module docstring)."""

    eos: EOSFit
    equilibrium: Atoms
    lattice: dict[str, float]
    lattice_name: str
    elastic_GPa: np.ndarray | None = None
    vacancy_eV: dict[str, dict[str, float]] = field(default_factory=dict)
    surface_J_m2: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Every value as plain data (volumes Å³/atom, energies eV/atom, moduli GPa)."""
        out: dict[str, Any] = {
            "lattice_name": self.lattice_name, "lattice_A": self.lattice,
            "volume_per_atom_A3": self.eos.v0, "energy_per_atom_eV": self.eos.e0,
            "bulk_modulus_GPa": self.eos.bulk_modulus_GPa,
            "bulk_modulus_derivative": self.eos.bulk_modulus_derivative,
            "eos_rms_residual_meV_per_atom": self.eos.rms_residual_meV,
            "eos_volumes_A3_per_atom": self.eos.volumes, "eos_energies_eV_per_atom":
            self.eos.energies,
        }
        if self.elastic_GPa is not None:
            out["elastic_constants_GPa"] = self.elastic_GPa
            out.update(elastic_summary(self.elastic_GPa, self.lattice_name))
        if self.vacancy_eV:
            out["vacancy"] = self.vacancy_eV
        if self.surface_J_m2:
            out["surfaces"] = self.surface_J_m2
        return out


def lattice_parameters(atoms: Atoms) -> tuple[str, dict[str, float]]:
    """ASE's Bravais lattice name and parameters of the cell (lengths Å, angles degrees)."""
    lattice = atoms.cell.get_bravais_lattice(eps=1e-4)
    return lattice.name, {k: float(v) for k, v in lattice.vars().items()}


def elastic_constants(atoms: Atoms, calculator: BaseCalculator, strain: float,
                      relax_fmax: float, relax_steps: int) -> np.ndarray:
    """The 6x6 elastic constants (GPa) of ``atoms`` by central differences of the stress.

    Each Voigt strain j is applied as a symmetric deformation (engineering shear strain for
    j ≥ 3), internal positions relaxed when the cell has more than one atom, and
    C_ij = (σ_i(+e) − σ_i(−e)) / (2 e) with ASE's stress sign (positive under tension).
    """
    constants = np.zeros((6, 6))
    for j, (a, b) in enumerate(VOIGT):
        stresses = []
        for sign in (1.0, -1.0):
            epsilon = np.zeros((3, 3))
            value = sign * strain if a == b else 0.5 * sign * strain
            epsilon[a, b] = epsilon[b, a] = value
            deformed = atoms.copy()
            deformed.set_cell(atoms.cell.array @ (np.eye(3) + epsilon), scale_atoms=True)
            if len(deformed) > 1:
                relax(deformed, calculator, relax_fmax, relax_steps)
            else:
                deformed.calc = calculator
            stresses.append(np.asarray(deformed.get_stress(voigt=True), dtype=np.float64))
        constants[:, j] = (stresses[0] - stresses[1]) / (2.0 * strain) / GPa
    return constants


def elastic_summary(constants: np.ndarray, lattice_name: str) -> dict[str, float]:
    """Named elastic constants (GPa): C11, C12, C44 (cubic averages) or the nine main
    ones, and the Voigt bulk and shear moduli."""
    c = constants
    bulk = (c[0, 0] + c[1, 1] + c[2, 2] + 2.0 * (c[0, 1] + c[0, 2] + c[1, 2])) / 9.0
    shear = ((c[0, 0] + c[1, 1] + c[2, 2]) - (c[0, 1] + c[0, 2] + c[1, 2])
             + 3.0 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15.0
    out = {"voigt_bulk_modulus_GPa": float(bulk), "voigt_shear_modulus_GPa": float(shear)}
    if lattice_name in CUBIC:
        out.update(C11=float(np.mean(np.diag(c)[:3])),
                   C12=float(np.mean([c[0, 1], c[0, 2], c[1, 2], c[1, 0], c[2, 0], c[2, 1]])),
                   C44=float(np.mean(np.diag(c)[3:])))
    else:
        for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2), (3, 3), (4, 4), (5, 5)):
            out[f"C{i + 1}{j + 1}"] = float(0.5 * (c[i, j] + c[j, i]))
    return out


def vacancy_energies(atoms: Atoms, calculator: BaseCalculator, options: CrystalOptions
                     ) -> dict[str, dict[str, float]]:
    """Vacancy formation (elemental) or removal (compound) energy of one atom of each
    element, eV, relaxed and unrelaxed, in a supercell of the equilibrium crystal."""
    repeat = options.vacancy_supercell or isotropic_repeat(atoms, options.vacancy_min_atoms)
    supercell = atoms.repeat(repeat)
    supercell.calc = calculator
    n = len(supercell)
    perfect = float(supercell.get_potential_energy())
    elemental = len(set(atoms.get_chemical_symbols())) == 1
    out = {}
    for symbol in dict.fromkeys(atoms.get_chemical_symbols()):
        defect = supercell.copy()
        del defect[defect.get_chemical_symbols().index(symbol)]
        defect.calc = calculator
        unrelaxed = float(defect.get_potential_energy())
        baseline = perfect * (n - 1) / n if elemental else perfect
        out[symbol] = {"unrelaxed_eV": unrelaxed - baseline, "supercell_atoms": n,
                       "kind": "formation" if elemental else "removal"}
        if options.relax_defects:
            relaxation = relax(defect, calculator, options.relax_fmax, options.relax_steps)
            out[symbol] |= {"relaxed_eV": relaxation.energy - baseline,
                            "relax_converged": relaxation.converged}
    return out


def conventional_cell(atoms: Atoms, symprec: float = 0.01) -> Atoms:
    """The conventional standard cell of ``atoms`` (spglib, positions idealised to the
    symmetry found within ``symprec`` Å), for Miller indices.

    Raises:
        SimulationError: spglib finds no symmetry to standardise the cell with.
    """
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():  # spglib 2.x warns about its legacy None-on-error mode
        warnings.simplefilter("ignore", DeprecationWarning)
        standard = spglib.standardize_cell(cell, to_primitive=False, symprec=symprec)
    if standard is None:
        raise SimulationError(f"spglib cannot find the conventional cell of "
                              f"{atoms.get_chemical_formula()}; leave out the surfaces part.")
    lattice, positions, numbers = standard
    return Atoms(numbers=numbers, scaled_positions=positions, cell=lattice, pbc=True)


def surface_energies(atoms: Atoms, energy_per_atom: float, calculator: BaseCalculator,
                     options: CrystalOptions) -> dict[str, dict[str, float]]:
    """Relaxed and unrelaxed surface energy (J/m²) of each Miller index of ``options``."""
    conventional = conventional_cell(atoms, options.surface_symprec)
    out = {}
    for index in options.surfaces:
        slab = surface(conventional, tuple(index), options.surface_layers,
                       vacuum=options.vacuum, periodic=True)
        area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
        slab.calc = calculator
        unrelaxed = float(slab.get_potential_energy())
        bulk = len(slab) * energy_per_atom
        row = {"unrelaxed_J_m2": (unrelaxed - bulk) / (2.0 * area) / J_PER_M2,
               "slab_atoms": len(slab)}
        if options.relax_defects:
            relaxation = relax(slab, calculator, options.relax_fmax, options.relax_steps)
            row |= {"relaxed_J_m2": (relaxation.energy - bulk) / (2.0 * area) / J_PER_M2,
                    "relax_converged": relaxation.converged}
        out["".join(str(i) for i in index)] = row
    return out


def properties(crystal: Atoms, calculator: BaseCalculator, options: CrystalOptions
               ) -> CrystalProperties:
    """Every property of ``options.parts`` for one calculator."""
    fit, equilibrium = equation_of_state(crystal, calculator, options.eos_points,
                                         options.eos_range, options.relax_fmax,
                                         options.relax_steps)
    name, lattice = lattice_parameters(equilibrium)
    result = CrystalProperties(fit, equilibrium, lattice, name)
    if "elastic" in options.parts:
        result.elastic_GPa = elastic_constants(equilibrium, calculator, options.elastic_strain,
                                               options.relax_fmax, options.relax_steps)
    if "vacancy" in options.parts:
        result.vacancy_eV = vacancy_energies(equilibrium, calculator, options)
    if "surfaces" in options.parts:
        result.surface_J_m2 = surface_energies(equilibrium, fit.e0, calculator, options)
    return result


def run(model: BaseCalculator, crystal: Atoms, out_dir, reference: BaseCalculator | None = None,
        options: CrystalOptions | None = None) -> CheckResult:
    """Crystal properties of the model, beside the reference's when one is given.

    Args:
        model: the model's ASE calculator (must give the stress for elastic constants).
        crystal: a 3D-periodic cell of the crystal (a primitive cell is enough).
        out_dir: folder for the figures.
        reference: the reference calculator.
        options: settings; defaults of :class:`CrystalOptions`.

    Raises:
        ConfigError: the crystal is not periodic in 3D, or an option is invalid.
    """
    options = options or CrystalOptions()
    options.check()
    if not crystal.pbc.all():
        raise ConfigError(f"crystal check: the crystal {crystal.get_chemical_formula()} is not "
                          f"periodic in all three directions (pbc {crystal.pbc.tolist()}); give "
                          "a bulk cell (--crystal).")
    calculators = {"model": model} | ({"reference": reference} if reference is not None else {})
    found = {who: properties(crystal, calc, options) for who, calc in calculators.items()}
    result = CheckResult(NAME, TITLE, summary={who: p.to_json() for who, p in found.items()})
    result.headlines = headlines(found.get("model"), found.get("reference"), options)
    result.tables.append(_table(result.headlines))
    sink = FigureSink(out_dir, NAME)
    result.figures.append(_eos_figure(found, sink))
    if "elastic" in options.parts:
        result.figures.append(_elastic_figure(found, sink))
    if {"vacancy", "surfaces"} & set(options.parts):
        result.figures.append(_defect_figure(found, sink, options.relax_defects))
    result.notes.append(
        f"Crystal {crystal.get_chemical_formula()} ({found['model'].lattice_name}); each "
        "calculator at its own equilibrium volume; isotropic EOS over "
        f"±{100 * options.eos_range:g} % in volume, {options.eos_points} points.")
    if reference is None:
        result.notes.append("No reference calculator: the model's values are shown alone.")
    return result


def headlines(model: CrystalProperties, reference: CrystalProperties | None,
              options: CrystalOptions) -> list[Headline]:
    """Model against reference for every computed property."""
    ref = reference
    out = [compare(f"lattice constant {k}", "Å", v, ref.lattice.get(k) if ref else None,
                   relative_tolerance=options.lattice_tolerance)
           for k, v in model.lattice.items() if k in ("a", "b", "c")]
    out.append(compare("bulk modulus B0", "GPa", model.eos.bulk_modulus_GPa,
                       ref.eos.bulk_modulus_GPa if ref else None,
                       relative_tolerance=options.bulk_modulus_tolerance))
    if model.elastic_GPa is not None:
        mine = elastic_summary(model.elastic_GPa, model.lattice_name)
        theirs = elastic_summary(ref.elastic_GPa, ref.lattice_name) if ref else {}
        for key, value in mine.items():
            if key.startswith("C"):
                out.append(compare(f"elastic constant {key}", "GPa", value, theirs.get(key),
                                   relative_tolerance=options.elastic_tolerance))
    state = "relaxed" if options.relax_defects else "unrelaxed"
    for symbol, row in model.vacancy_eV.items():
        other = ref.vacancy_eV[symbol][f"{state}_eV"] if ref else None
        name = f"vacancy {row['kind']} energy ({symbol})"
        out.append(compare(name if options.relax_defects else f"{name}, unrelaxed", "eV",
                           row[f"{state}_eV"], other,
                           absolute_tolerance=options.vacancy_tolerance_eV))
    for index, row in model.surface_J_m2.items():
        other = ref.surface_J_m2[index][f"{state}_J_m2"] if ref else None
        name = f"surface energy ({index})"
        out.append(compare(name if options.relax_defects else f"{name}, unrelaxed", "J/m²",
                           row[f"{state}_J_m2"], other,
                           relative_tolerance=options.surface_tolerance))
    return out


def _table(rows: Sequence[Headline]) -> Table:
    return Table("Model against reference", ["quantity", "model", "reference", "Δ", "unit"],
                 [[h.quantity, fmt(h.model, 5), fmt(h.reference, 5),
                   f"{fmt(h.deviation, 3)} {h.deviation_unit}" if h.deviation is not None
                   else "—", h.unit] for h in rows])


def _style(who: str) -> dict[str, Any]:
    return {"color": MODEL_COLOR if who == "model" else REFERENCE_COLOR,
            "ls": "-" if who == "model" else "--"}


def _eos_figure(found: dict[str, CrystalProperties], sink: FigureSink):
    figure, ax = new_figure(1, 1, width=5.0, height=3.8)
    data = {}
    for who, props in found.items():
        fit = props.eos
        dense = np.linspace(fit.volumes.min(), fit.volumes.max(), 200)
        ax.plot(fit.volumes, fit.energies, "o", color=_style(who)["color"], ms=4)
        ax.plot(dense, fit.curve(dense), **_style(who),
                label=f"{who}: V0 {fit.v0:.3f} Å³, B0 {fit.bulk_modulus_GPa:.1f} GPa")
        data[who] = {"volume_A3_per_atom": fit.volumes, "energy_eV_per_atom": fit.energies,
                     "fit_volume": dense, "fit_energy": fit.curve(dense), "v0": fit.v0,
                     "b0_GPa": fit.bulk_modulus_GPa}
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend(fontsize="small")
    return sink.save(figure, "eos", "Energy per atom against volume per atom: computed points "
                     "and the Birch-Murnaghan fit of each calculator.", data)


def _elastic_figure(found: dict[str, CrystalProperties], sink: FigureSink):
    figure, ax = new_figure(1, 1, width=5.0, height=3.6)
    names = [k for k in elastic_summary(found["model"].elastic_GPa, found["model"].lattice_name)
             if k.startswith("C")]
    x = np.arange(len(names))
    data: dict[str, Any] = {"names": names}
    for offset, (who, props) in zip((-0.2, 0.2), found.items(), strict=False):
        values = elastic_summary(props.elastic_GPa, props.lattice_name)
        heights = [values.get(n, np.nan) for n in names]
        bars = ax.bar(x + (offset if len(found) > 1 else 0), heights, 0.4, label=who,
                      color=_style(who)["color"], alpha=0.8)
        ax.bar_label(bars, fmt="%.4g", fontsize="x-small")
        data[who] = heights
    ax.set_xticks(x, names)
    ax.set_ylabel("GPa")
    ax.legend(fontsize="small")
    return sink.save(figure, "elastic", "Elastic constants (GPa) of each calculator.", data)


def _defect_figure(found: dict[str, CrystalProperties], sink: FigureSink, relaxed: bool = True):
    figure, (vacancy_ax, surface_ax) = new_figure(2, 1, width=4.2, height=3.6)
    data: dict[str, Any] = {}
    state = "relaxed" if relaxed else "unrelaxed"
    for ax, key, value_key, unit in ((vacancy_ax, "vacancy_eV", f"{state}_eV", "eV"),
                                     (surface_ax, "surface_J_m2", f"{state}_J_m2", "J/m²")):
        names = list(getattr(found["model"], key))
        x = np.arange(len(names))
        for offset, (who, props) in zip((-0.2, 0.2), found.items(), strict=False):
            values = [getattr(props, key)[n][value_key] for n in names]
            bars = ax.bar(x + (offset if len(found) > 1 else 0), values, 0.4, label=who,
                          color=_style(who)["color"], alpha=0.8)
            ax.bar_label(bars, fmt="%.3g", fontsize="x-small")
            data.setdefault(key, {"names": names})[who] = values
        ax.set_xlim(-0.7, len(names) - 0.3)
        ax.set_xticks(x, [f"V_{n}" if key == "vacancy_eV" else f"({n})" for n in names])
        ax.set_ylabel(unit)
        ax.set_title("vacancy formation energy" if key == "vacancy_eV" else "surface energy",
                     fontsize="medium")
        ax.margins(y=0.12)
        if names:
            ax.legend(fontsize="small", loc="lower right")
    return sink.save(figure, "defects", f"{state.capitalize()} vacancy formation energies (eV) "
                     "and surface energies (J/m²) of each calculator.", data)
