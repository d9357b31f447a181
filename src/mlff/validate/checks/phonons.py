"""Check 5b, phonons (phonopy): dispersion along the crystal's standard special-point path
(ASE's band path for its Bravais lattice) and the density of states, for the model and the
reference, each at its own equilibrium volume (:mod:`mlff.validate.eos`).

Force constants come from finite displacements (``displacement`` Å, phonopy's symmetry-
reduced set) in a supercell; the forces of the undisplaced supercell are subtracted, so a
model whose equilibrium forces are not exactly zero is not penalised for it. Frequencies
are in THz (1 THz = 33.356 cm⁻¹ = 4.1357 meV).

Figures of merit: at each special point other than Γ, the frequencies of all branches
and their largest relative deviation from the reference (branches below 0.1 THz in the
reference are left out of the ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.dft.kpoints import parse_path_string

from mlff.errors import ConfigError
from mlff.validate.eos import equation_of_state
from mlff.validate.figures import MODEL_COLOR, REFERENCE_COLOR, FigureSink, new_figure
from mlff.validate.geometry import isotropic_repeat
from mlff.validate.result import CheckResult, Headline, Table, fmt

NAME = "phonons"
TITLE = "Phonons: dispersion and density of states"
GAMMA = "G"
MIN_FREQUENCY_THZ = 0.1  # branches below this (in the reference) are left out of ratios


@dataclass
class PhononOptions:
    """Settings of the phonon check.

    Attributes:
        supercell: repetition of the crystal's cell; default the smallest (n, n, n) with
            at least ``min_atoms`` atoms.
        min_atoms: see ``supercell``.
        displacement: finite displacement, Å.
        path: special-point path in ASE's notation (``"GXWKGLUWLK,UX"`` for fcc); default
            the lattice's standard path.
        points: q-points along the whole path.
        mesh: q-point mesh of the density of states.
        relax_at_equilibrium: use each calculator's own equilibrium volume (EOS fit);
            otherwise the crystal as given.
        eos_points, eos_range: volumes of that EOS fit and their relative half-width (the
            crystal check's defaults; set both checks alike and a caching reference
            computes each volume once).
        tolerance: accepted relative deviation of the frequencies at special points.
    """

    supercell: tuple[int, int, int] | None = None
    min_atoms: int = 64
    displacement: float = 0.01
    path: str | None = None
    points: int = 150
    mesh: tuple[int, int, int] = (20, 20, 20)
    relax_at_equilibrium: bool = True
    eos_points: int = 11
    eos_range: float = 0.06
    tolerance: float = 0.05

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if not self.displacement > 0 or self.points < 2 or self.min_atoms < 1:
            raise ConfigError(f"phonon check: displacement ({self.displacement}) must be > 0, "
                              f"points ({self.points}) >= 2 and min_atoms ({self.min_atoms}) "
                              ">= 1.")
        for name in ("supercell", "mesh"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or any(int(n) < 1 for n in value)):
                raise ConfigError(f"phonon check: {name} {value} must be three whole numbers "
                                  ">= 1.")


@dataclass
class Phonons:
    """One calculator's phonons.

    Attributes:
        x: (Q,) position along the path (1/Å, ASE's linear axis).
        frequencies: (Q, 3n) THz along the path.
        special_x: positions of the special points; ``labels``: their names.
        at_points: special-point name -> (3n,) sorted frequencies, THz.
        dos_frequencies, dos: total density of states (states/THz per cell) on a grid, THz.
        lattice_volume: volume per atom at which the phonons were computed, Å³.
    """

    x: np.ndarray
    frequencies: np.ndarray
    special_x: np.ndarray
    labels: list[str]
    at_points: dict[str, np.ndarray]
    dos_frequencies: np.ndarray
    dos: np.ndarray
    lattice_volume: float


def compute_phonons(crystal: Atoms, calculator: BaseCalculator, options: PhononOptions
                    ) -> Phonons:
    """Phonons of ``crystal`` (used as given: scale it to equilibrium first) with phonopy."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=crystal.get_chemical_symbols(), cell=crystal.cell.array,
                        scaled_positions=crystal.get_scaled_positions(),
                        masses=crystal.get_masses())
    repeat = options.supercell or isotropic_repeat(crystal, options.min_atoms)
    phonon = Phonopy(unit, supercell_matrix=np.diag(repeat), primitive_matrix=None)
    phonon.generate_displacements(distance=options.displacement)
    perfect = _forces(phonon.supercell, calculator)
    phonon.forces = [_forces(s, calculator) - perfect
                     for s in phonon.supercells_with_displacements]
    phonon.produce_force_constants()
    bandpath = crystal.cell.bandpath(options.path, npoints=options.points)
    x, special_x, labels = bandpath.get_linear_kpoint_axis()
    phonon.run_qpoints(bandpath.kpts)
    frequencies = np.asarray(phonon.qpoints.frequencies)
    at_points = {}
    names = [name for segment in parse_path_string(bandpath.path) for name in segment]
    for name in dict.fromkeys(names):  # in path order
        phonon.run_qpoints([bandpath.special_points[name]])
        at_points[name] = np.sort(np.asarray(phonon.qpoints.frequencies)[0])
    phonon.run_mesh(list(options.mesh), is_gamma_center=True)
    phonon.run_total_dos()
    dos = phonon.total_dos
    return Phonons(np.asarray(x), frequencies, np.asarray(special_x), list(labels), at_points,
                   np.asarray(dos.frequency_points), np.asarray(dos.dos),
                   abs(crystal.cell.volume) / len(crystal))


def _forces(cell: Any, calculator: BaseCalculator) -> np.ndarray:
    """Forces (eV/Å) of a phonopy supercell."""
    atoms = Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions,
                  pbc=True)
    atoms.calc = calculator
    return np.asarray(atoms.get_forces(), dtype=np.float64)


def point_deviation(model: np.ndarray, reference: np.ndarray) -> float:
    """Largest relative deviation (%) of sorted branch frequencies at one q-point, over the
    branches at or above 0.1 THz in the reference."""
    keep = np.abs(reference) >= MIN_FREQUENCY_THZ
    if not keep.any():
        return 0.0
    return float(100.0 * np.max(np.abs(model[keep] - reference[keep]) / np.abs(reference[keep])))


def run(model: BaseCalculator, crystal: Atoms, out_dir, reference: BaseCalculator | None = None,
        options: PhononOptions | None = None) -> CheckResult:
    """Phonon dispersion and DOS of the model, beside the reference's when one is given.

    Args:
        model: the model's ASE calculator.
        crystal: a 3D-periodic cell (a primitive cell: the dispersion is of this cell).
        out_dir: folder for the figure.
        reference: the reference calculator.
        options: settings; defaults of :class:`PhononOptions`.

    Raises:
        ConfigError: the crystal is not periodic in 3D, or phonopy is not installed.
    """
    options = options or PhononOptions()
    options.check()
    if not crystal.pbc.all():
        raise ConfigError(f"phonon check: the crystal {crystal.get_chemical_formula()} is not "
                          "periodic in all three directions; give a bulk cell (--crystal).")
    try:
        import phonopy  # noqa: F401
    except ImportError:
        raise ConfigError("phonon check: phonopy is not installed; `pip install phonopy` "
                          "(pinned in requirements.txt) or leave out the phonons check.") from None
    calculators = {"model": model} | ({"reference": reference} if reference is not None else {})
    found = {}
    for who, calc in calculators.items():
        cell = crystal
        if options.relax_at_equilibrium:
            _, cell = equation_of_state(crystal, calc, options.eos_points, options.eos_range)
        found[who] = compute_phonons(cell, calc, options)
    result = CheckResult(NAME, TITLE, summary=_summary(found))
    result.headlines = _headlines(found, options)
    result.tables.append(_table(found))
    result.figures.append(_figure(found, FigureSink(out_dir, NAME)))
    repeat = options.supercell or isotropic_repeat(crystal, options.min_atoms)
    result.notes.append(
        f"Supercell {'x'.join(map(str, repeat))} of the {len(crystal)}-atom cell, displacement "
        f"{options.displacement:g} Å; "
        + ("each calculator at its own equilibrium volume." if options.relax_at_equilibrium
           else "the crystal as given."))
    if reference is None:
        result.notes.append("No reference calculator: the model's phonons are shown alone.")
    return result


def _summary(found: dict[str, Phonons]) -> dict[str, Any]:
    out: dict[str, Any] = {who: {"frequencies_at_points_THz": p.at_points,
                                 "volume_per_atom_A3": p.lattice_volume,
                                 "max_frequency_THz": float(p.frequencies.max())}
                           for who, p in found.items()}
    if "reference" in found:
        model, ref = found["model"], found["reference"]
        out["deviation_percent_at_points"] = {
            name: point_deviation(model.at_points[name], ref.at_points[name])
            for name in model.at_points if name != GAMMA}
        if model.frequencies.shape == ref.frequencies.shape:
            out["rms_difference_along_path_THz"] = float(
                np.sqrt(np.mean((model.frequencies - ref.frequencies) ** 2)))
    return out


def _headlines(found: dict[str, Phonons], options: PhononOptions) -> list[Headline]:
    model, ref = found["model"], found.get("reference")
    out = []
    for name, values in model.at_points.items():
        if name == GAMMA:
            continue
        headline = Headline(f"phonon frequencies at {name}", "THz", values.tolist())
        if ref is not None:
            headline.reference = ref.at_points[name].tolist()
            headline.deviation = point_deviation(values, ref.at_points[name])
            headline.deviation_unit = "% (largest over branches)"
            headline.target = 100.0 * options.tolerance
            headline.target_text = f"|Δ| ≤ {100.0 * options.tolerance:g} % per branch"
            headline.passed = headline.deviation <= headline.target
        out.append(headline)
    return out


def _table(found: dict[str, Phonons]) -> Table:
    model, ref = found["model"], found.get("reference")
    rows = []
    for name, values in model.at_points.items():
        row = [name, fmt(values.tolist())]
        if ref is not None:
            row += [fmt(ref.at_points[name].tolist()),
                    fmt(point_deviation(values, ref.at_points[name]), 3)]
        rows.append(row)
    header = ["point", "model (THz)"] + (["reference (THz)", "largest Δ (%)"] if ref else [])
    return Table("Frequencies of every branch at the special points", header, rows)


def _figure(found: dict[str, Phonons], sink: FigureSink):
    figure, (band_ax, dos_ax) = new_figure(2, 1, width=4.0, height=4.0,
                                           gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    figure.set_size_inches(9.0, 4.2)
    data: dict[str, Any] = {}
    for who, p in found.items():
        color = MODEL_COLOR if who == "model" else REFERENCE_COLOR
        style = "-" if who == "model" else "--"
        lines = band_ax.plot(p.x, p.frequencies, color=color, ls=style, lw=1.0)
        lines[0].set_label(who)
        dos_ax.plot(p.dos, p.dos_frequencies, color=color, ls=style, lw=1.0)
        data[who] = {"path_x": p.x, "frequencies_THz": p.frequencies,
                     "dos_frequencies_THz": p.dos_frequencies, "dos": p.dos}
    first = next(iter(found.values()))
    for x in first.special_x:
        band_ax.axvline(x, color="gray", lw=0.5)
    band_ax.set_xticks(first.special_x, [_label(s) for s in first.labels])
    band_ax.set_xlim(first.x[0], first.x[-1])
    band_ax.axhline(0.0, color="gray", lw=0.5)
    band_ax.set_ylabel("frequency (THz)")
    band_ax.legend(fontsize="small")
    dos_ax.set_xlabel("DOS (states/THz)")
    dos_ax.set_xlim(left=0.0)
    data["special_x"], data["labels"] = first.special_x, first.labels
    return sink.save(figure, "dispersion", "Phonon dispersion along the special-point path "
                     "and total density of states: model (solid) and reference (dashed).", data)


def _label(name: str) -> str:
    return "Γ" if name == GAMMA else name

