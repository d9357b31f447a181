"""Check 6, molecules: bond dissociation curves, dihedral scans and normal-mode
frequencies, for the model and (when given) the reference.

- Bond dissociation: rigid scans from the model-relaxed geometry. The bond i-j is
  stretched by moving the fragment on j's side (j alone when the bond is in a ring) along
  the bond, from ``bond_range[0]`` to ``bond_range[1]`` times its length. Energies (eV)
  relative to the unstretched geometry, for each calculator on the same geometries.
  Default bonds: the first bond of each pair of elements (covalent radii decide bonding).
- Dihedral scans: rigid rotations, in steps of ``dihedral_step_deg``, of the fragment on
  one side of each rotatable bond (neither terminal nor in a ring); energies relative to
  the starting geometry; the barrier is the highest minus the lowest energy.
- Normal modes: each calculator relaxes the molecule (the reference from the model's
  minimum), the Hessian comes from central differences of the forces, and ASE's
  :class:`~ase.vibrations.VibrationsData` gives the frequencies (cm⁻¹; imaginary ones as
  negative numbers). The 6 (5 for a linear molecule) modes closest to zero are left out.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.neighborlist import build_neighbor_list, natural_cutoffs
from ase.vibrations import VibrationsData

from mlff.errors import ConfigError
from mlff.validate.figures import MODEL_COLOR, REFERENCE_COLOR, FigureSink, new_figure
from mlff.validate.geometry import relax
from mlff.validate.result import CheckResult, Headline, Table, compare, fmt

NAME = "molecule"
TITLE = "Molecule: bond dissociation, dihedral scans, normal modes"
PARTS = ("bonds", "dihedrals", "modes")


@dataclass
class MoleculeOptions:
    """Settings of the molecule check.

    Attributes:
        parts: which of ``bonds``, ``dihedrals``, ``modes`` to compute.
        bonds: 0-based atom pairs (i, j) to stretch; default one bond per element pair.
        bond_range: shortest and longest bond length, in units of the starting length.
        bond_points: geometries per bond scan.
        dihedrals: 0-based quadruples (a, b, c, d) to rotate about b-c; default one per
            rotatable bond.
        dihedral_step_deg: rotation step, degrees (a full turn is scanned).
        relax_start: relax the molecule with the model before the scans (otherwise the
            scans start from the geometry as given).
        relax_fmax: force threshold of the relaxations, eV/Å.
        relax_steps: steps allowed per relaxation.
        displacement: finite displacement of the Hessian, Å.
        bond_tolerance: accepted relative deviation of the stretched-bond energy E(r_max).
        dihedral_tolerance: accepted relative deviation of each dihedral barrier.
        mode_tolerance: accepted relative deviation of each normal-mode frequency.
    """

    parts: tuple[str, ...] = PARTS
    bonds: list[tuple[int, int]] | None = None
    bond_range: tuple[float, float] = (0.8, 2.5)
    bond_points: int = 12
    dihedrals: list[tuple[int, int, int, int]] | None = None
    dihedral_step_deg: float = 30.0
    relax_start: bool = True
    relax_fmax: float = 0.001
    relax_steps: int = 500
    displacement: float = 0.01
    bond_tolerance: float = 0.10
    dihedral_tolerance: float = 0.10
    mode_tolerance: float = 0.05

    def check(self, atoms: Atoms) -> None:
        """Raise :class:`ConfigError` naming the first setting that does not fit ``atoms``."""
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ConfigError(f"molecule check: unknown part(s) {unknown}; choose from "
                              f"{', '.join(PARTS)}.")
        n = len(atoms)
        for group in list(self.bonds or []) + list(self.dihedrals or []):
            if any(not 0 <= k < n for k in group) or len(set(group)) != len(group):
                raise ConfigError(f"molecule check: atoms {tuple(group)} are not distinct "
                                  f"indices of the {n}-atom molecule "
                                  f"{atoms.get_chemical_formula()} (0-based).")
        low, high = self.bond_range
        if not 0 < low < 1 < high:
            raise ConfigError(f"molecule check: bond_range {self.bond_range} must satisfy "
                              "0 < shortest < 1 < longest (units of the bond length).")
        if self.bond_points < 3:
            raise ConfigError("molecule check: bond_points must be at least 3.")


def bond_graph(atoms: Atoms) -> list[set[int]]:
    """Neighbours of each atom, bonded when closer than the sum of covalent radii (ASE's
    natural cutoffs)."""
    neighbours = build_neighbor_list(atoms, natural_cutoffs(atoms), self_interaction=False,
                                     bothways=True)
    return [set(int(j) for j in neighbours.get_neighbors(i)[0]) for i in range(len(atoms))]


def side(graph: list[set[int]], start: int, blocked: int) -> set[int]:
    """Atoms reachable from ``start`` without passing through ``blocked``."""
    seen, queue = {start}, deque([start])
    while queue:
        for k in graph[queue.popleft()]:
            if k != blocked and k not in seen:
                seen.add(k)
                queue.append(k)
    return seen


def in_ring(graph: list[set[int]], i: int, j: int) -> bool:
    """Whether the bond i-j lies in a ring: j still reaches i once that bond is cut."""
    seen, queue = {j}, deque([j])
    while queue:
        k = queue.popleft()
        for m in graph[k]:
            if {k, m} == {i, j}:
                continue
            if m == i:
                return True
            if m not in seen:
                seen.add(m)
                queue.append(m)
    return False


def default_bonds(atoms: Atoms, graph: list[set[int]]) -> list[tuple[int, int]]:
    """The first bond (i < j) of each pair of elements."""
    symbols = atoms.get_chemical_symbols()
    chosen: dict[tuple[str, str], tuple[int, int]] = {}
    for i, neighbours in enumerate(graph):
        for j in sorted(neighbours):
            if i < j:
                chosen.setdefault(tuple(sorted((symbols[i], symbols[j]))), (i, j))
    return list(chosen.values())


def default_dihedrals(atoms: Atoms, graph: list[set[int]]) -> list[tuple[int, int, int, int]]:
    """One dihedral (a, b, c, d) per rotatable bond b-c, heavier end atoms preferred."""
    out = []
    for b, neighbours in enumerate(graph):
        for c in sorted(neighbours):
            if b > c or len(graph[b]) < 2 or len(graph[c]) < 2 or in_ring(graph, b, c):
                continue
            a = max(graph[b] - {c}, key=lambda k: (atoms.numbers[k], -k))
            d = max(graph[c] - {b}, key=lambda k: (atoms.numbers[k], -k))
            out.append((a, b, c, d))
    return out


def bond_scan(atoms: Atoms, graph: list[set[int]], bond: tuple[int, int],
              options: MoleculeOptions) -> tuple[np.ndarray, list[Atoms]]:
    """Bond lengths (Å) and the rigidly stretched geometries of ``bond``."""
    i, j = bond
    moving = {j} if in_ring(graph, i, j) else side(graph, j, i)
    mask = np.zeros(len(atoms), bool)
    mask[list(moving)] = True
    vector = atoms.positions[j] - atoms.positions[i]
    r0 = float(np.linalg.norm(vector))
    lengths = r0 * np.linspace(*options.bond_range, options.bond_points)
    geometries = []
    for r in lengths:
        stretched = atoms.copy()
        stretched.positions[mask] += (r - r0) * vector / r0
        geometries.append(stretched)
    return lengths, geometries


def dihedral_scan(atoms: Atoms, graph: list[set[int]], quad: tuple[int, int, int, int],
                  step_deg: float) -> tuple[np.ndarray, list[Atoms]]:
    """Dihedral angles (degrees) and the rigidly rotated geometries of ``quad``.

    Raises:
        ConfigError: b-c lies in a ring, so no fragment can rotate rigidly about it.
    """
    a, b, c, d = quad
    if in_ring(graph, b, c):
        raise ConfigError(f"molecule check: the bond {b}-{c} of dihedral {quad} lies in a ring; "
                          "a rigid dihedral scan needs a bond outside rings.")
    moving = side(graph, c, b)
    mask = [k in moving for k in range(len(atoms))]
    start = atoms.get_dihedral(a, b, c, d)
    angles = start + np.arange(0.0, 360.0, step_deg)
    geometries = []
    for angle in angles:
        rotated = atoms.copy()
        rotated.set_dihedral(a, b, c, d, angle % 360.0, mask=mask)
        geometries.append(rotated)
    return angles, geometries


def relative_energies(geometries: list[Atoms], calculator: BaseCalculator,
                      origin: Atoms | None = None,
                      failures: list[str] | None = None) -> np.ndarray:
    """Energies (eV) of ``geometries`` relative to that of ``origin`` (default: the first).

    A geometry whose calculation fails (e.g. an SCF that does not converge at a stretched
    bond) gets NaN, and the reason is appended to ``failures``; the scan goes on.
    """
    energies = []
    for k, geometry in enumerate(([origin] if origin is not None else []) + list(geometries)):
        atoms = geometry.copy()
        atoms.calc = calculator
        try:
            energies.append(float(atoms.get_potential_energy()))
        except Exception as exc:  # any calculator's failure at one point of a scan
            energies.append(math.nan)
            if failures is not None:
                where = "the unscanned geometry" if origin is not None and k == 0 else \
                    f"point {k + (0 if origin is not None else 1)}"
                failures.append(f"{where}: {type(exc).__name__}: {exc}")
    energies = np.asarray(energies) - energies[0]
    return energies[1:] if origin is not None else energies


def _scan(geometries: list[Atoms], calculators: dict[str, BaseCalculator], label: str,
          result: CheckResult, origin: Atoms | None = None) -> dict[str, np.ndarray]:
    """Energies of every calculator relative to ``origin`` (default: the first geometry);
    failed points noted in ``result``."""
    out = {}
    for who, calc in calculators.items():
        failures: list[str] = []
        out[who] = relative_energies(geometries, calc, origin, failures)
        if failures:
            result.notes.append(f"Scan {label}, {who}: {len(failures)} of {len(geometries)} "
                                f"calculations failed and are left out ({failures[0]}).")
    return out


def normal_modes(atoms: Atoms, calculator: BaseCalculator, options: MoleculeOptions
                 ) -> tuple[np.ndarray, Atoms, bool]:
    """Relax a copy of ``atoms``, then its vibrational frequencies (cm⁻¹, imaginary as
    negative), without the rigid-body modes; returns them, the minimum and convergence."""
    minimum = atoms.copy()
    relaxation = relax(minimum, calculator, options.relax_fmax, options.relax_steps)
    h = options.displacement
    n = len(minimum)
    hessian = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        forces = []
        for sign in (1.0, -1.0):
            displaced = minimum.copy()
            displaced.positions[k // 3, k % 3] += sign * h
            displaced.calc = calculator
            forces.append(np.asarray(displaced.get_forces()).ravel())
        hessian[k] = -(forces[0] - forces[1]) / (2.0 * h)
    hessian = 0.5 * (hessian + hessian.T)
    minimum.calc = None
    frequencies = VibrationsData.from_2d(minimum, hessian).get_frequencies()
    real = np.where(np.abs(frequencies.imag) > np.abs(frequencies.real), -np.abs(frequencies.imag),
                    frequencies.real)
    rigid = 5 if _is_linear(minimum) else 6
    keep = np.sort(np.argsort(np.abs(real))[min(rigid, len(real)):])
    return np.sort(real[keep]), minimum, relaxation.converged


def _is_linear(atoms: Atoms) -> bool:
    if len(atoms) < 3:
        return True
    moments = atoms.get_moments_of_inertia()
    return bool(moments.min() < 1e-3 * max(moments.max(), 1e-12))


@dataclass
class _Curves:
    """Scans of one kind: label -> (x, {who: energies})."""

    x: dict[str, np.ndarray] = field(default_factory=dict)
    energies: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def run(model: BaseCalculator, molecule: Atoms, out_dir, reference: BaseCalculator | None = None,
        options: MoleculeOptions | None = None) -> CheckResult:
    """Bond dissociation curves, dihedral scans and normal modes of ``molecule``.

    Args:
        model: the model's ASE calculator.
        molecule: the molecule (not periodic; positions Å).
        out_dir: folder for the figures.
        reference: the reference calculator (evaluated on the same scan geometries).
        options: settings; defaults of :class:`MoleculeOptions`.

    Raises:
        ConfigError: the structure is periodic, or an option does not fit the molecule.
    """
    options = options or MoleculeOptions()
    options.check(molecule)
    if molecule.pbc.any():
        raise ConfigError(f"molecule check: {molecule.get_chemical_formula()} is periodic "
                          f"(pbc {molecule.pbc.tolist()}); give a molecule (--molecule).")
    calculators = {"model": model} | ({"reference": reference} if reference is not None else {})
    start = molecule.copy()
    origin = "the geometry as given"
    if options.relax_start:
        relaxation = relax(start, model, options.relax_fmax, options.relax_steps)
        origin = f"the model-relaxed geometry (max force {relaxation.max_force:.2g} eV/Å)"
    start.calc = None
    graph = bond_graph(start)
    result = CheckResult(NAME, TITLE)
    sink = FigureSink(out_dir, NAME)
    result.notes.append(
        f"{molecule.get_chemical_formula()}: scans are rigid, from {origin}; energies relative "
        "to the unscanned geometry, for each calculator.")
    if "bonds" in options.parts:
        bonds = options.bonds or default_bonds(start, graph)
        curves = _Curves()
        for bond in bonds:
            label = _bond_label(start, bond)
            curves.x[label], geometries = bond_scan(start, graph, tuple(bond), options)
            curves.energies[label] = _scan(geometries, calculators, label, result, origin=start)
        _add_curves(result, curves, "bonds", "bond length (Å)", options.bond_tolerance, sink)
    if "dihedrals" in options.parts:
        quads = options.dihedrals or default_dihedrals(start, graph)
        curves = _Curves()
        for quad in quads:
            label = "-".join(f"{start[k].symbol}{k}" for k in quad)
            curves.x[label], geometries = dihedral_scan(start, graph, tuple(quad),
                                                        options.dihedral_step_deg)
            curves.energies[label] = _scan(geometries, calculators, label, result)
        if not quads:
            result.notes.append("No rotatable bond (neither terminal nor in a ring): no "
                                "dihedral scan.")
        _add_curves(result, curves, "dihedrals", "dihedral angle (degrees)",
                    options.dihedral_tolerance, sink)
    if "modes" in options.parts:
        try:
            _add_modes(result, start, calculators, options, sink)
        except Exception as exc:  # e.g. the reference's SCF fails during its relaxation
            result.notes.append(f"The normal modes could not be computed: "
                                f"{type(exc).__name__}: {exc}")
            result.headlines.append(Headline("normal-mode frequencies", "cm⁻¹", None,
                                             passed=False, target_text="computed"))
    if reference is None:
        result.notes.append("No reference calculator: the model's values are shown alone.")
    return result


def _bond_label(atoms: Atoms, bond: tuple[int, int]) -> str:
    i, j = bond
    return f"{atoms[i].symbol}{i}-{atoms[j].symbol}{j}"


def _add_curves(result: CheckResult, curves: _Curves, kind: str, x_label: str,
                tolerance: float, sink: FigureSink) -> None:
    """Summary, headlines, table and figure of the bond or dihedral scans."""
    if not curves.x:
        return
    summary = {}
    rows = []
    for label, x in curves.x.items():
        energies = curves.energies[label]
        row: dict[str, Any] = {"x": x, "energies_eV": energies}
        # points every calculator computed (a failed reference point is NaN)
        both = np.all([np.isfinite(e) for e in energies.values()], axis=0)
        row["points_compared"] = int(both.sum())
        if kind == "bonds":
            value = lambda e: float(e[both][-1]) if both.any() else math.nan  # noqa: E731
            what = f"bond {label}: E(stretched) − E(start)"
        else:
            value = lambda e: float(np.ptp(e[both])) if both.any() else math.nan  # noqa: E731
            what = f"dihedral {label}: barrier"
        row["model_value_eV"] = value(energies["model"])
        reference_value = None
        if "reference" in energies:
            ref = energies["reference"]
            reference_value = value(ref)
            row["reference_value_eV"] = reference_value
            row["rms_difference_eV"] = (float(np.sqrt(np.mean((energies["model"] - ref)[both]
                                                              ** 2))) if both.any()
                                        else math.nan)
        summary[label] = row
        headline = compare(what, "eV", row["model_value_eV"], reference_value,
                           relative_tolerance=tolerance)
        result.headlines.append(headline)
        rows.append([label, fmt(row["model_value_eV"]), fmt(reference_value),
                     fmt(row.get("rms_difference_eV"))])
    result.summary[kind] = summary
    value = "E(longest) − E(start) (eV)" if kind == "bonds" else "barrier (eV)"
    result.tables.append(Table(
        "Bond dissociation scans" if kind == "bonds" else "Dihedral scans",
        ["scan", f"model {value}", f"reference {value}", "RMS Δ over the scan (eV)"], rows))
    figure, axes = new_figure(len(curves.x), 1, width=4.0, height=3.4)
    axes = np.atleast_1d(axes)
    for ax, (label, x) in zip(axes, curves.x.items(), strict=True):
        for who, energies in curves.energies[label].items():
            ax.plot(x, energies, "o-" if who == "model" else "s--", ms=3,
                    color=MODEL_COLOR if who == "model" else REFERENCE_COLOR, label=who)
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel(x_label)
        ax.set_ylabel("E − E(start) (eV)")
        ax.legend(fontsize="small")
    caption = ("Bond dissociation curves: energy against bond length, rigid stretch."
               if kind == "bonds" else "Dihedral scans: energy against dihedral angle, rigid "
               "rotation.")
    result.figures.append(sink.save(figure, kind, caption,
                                    {"x_label": x_label, "scans": summary}))


def _add_modes(result: CheckResult, start: Atoms, calculators: dict[str, BaseCalculator],
               options: MoleculeOptions, sink: FigureSink) -> None:
    """Normal modes of each calculator: summary, headline, table, figure."""
    found: dict[str, np.ndarray] = {}
    converged = {}
    geometry = start
    for who, calc in calculators.items():
        found[who], minimum, converged[who] = normal_modes(geometry, calc, options)
        geometry = minimum if who == "model" else geometry
    summary: dict[str, Any] = {who: {"frequencies_cm": f, "relax_converged": converged[who]}
                               for who, f in found.items()}
    model = found["model"]
    headline = Headline("normal-mode frequencies (highest)", "cm⁻¹", float(model.max()))
    if "reference" in found:
        ref = found["reference"]
        keep = np.abs(ref) > 1e-6
        relative = 100.0 * np.abs(model - ref)[keep] / np.abs(ref[keep])
        summary["mae_cm"] = float(np.mean(np.abs(model - ref)))
        summary["max_abs_deviation_cm"] = float(np.max(np.abs(model - ref)))
        summary["max_relative_deviation_percent"] = float(relative.max()) if keep.any() else 0.0
        headline = Headline(
            "normal-mode frequencies: MAE", "cm⁻¹", summary["mae_cm"], None,
            summary["max_relative_deviation_percent"], "% (largest over modes)",
            100.0 * options.mode_tolerance,
            f"each |Δ| ≤ {100.0 * options.mode_tolerance:g} %",
            summary["max_relative_deviation_percent"] <= 100.0 * options.mode_tolerance)
    result.summary["modes"] = summary
    result.headlines.append(headline)
    rows = [[str(k + 1), fmt(model[k], 5)] + ([fmt(found["reference"][k], 5),
                                               fmt(model[k] - found["reference"][k], 3)]
                                              if "reference" in found else [])
            for k in range(len(model))]
    header = ["mode", "model (cm⁻¹)"] + (["reference (cm⁻¹)", "Δ (cm⁻¹)"]
                                         if "reference" in found else [])
    result.tables.append(Table("Normal-mode frequencies, each calculator at its own minimum",
                               header, rows))
    for who, ok in converged.items():
        if not ok:
            result.notes.append(f"The {who}'s relaxation before the normal modes stopped above "
                                f"{options.relax_fmax:g} eV/Å: frequencies may be inaccurate.")
    figure, ax = new_figure(1, 1, width=5.0, height=4.2)
    if "reference" in found:
        ref = found["reference"]
        ax.scatter(ref, model, s=14)
        low, high = min(ref.min(), model.min(), 0.0), max(ref.max(), model.max()) * 1.05
        ax.plot([low, high], [low, high], color="black", lw=0.8)
        ax.set_xlabel("reference frequency (cm⁻¹)")
        ax.set_ylabel("model frequency (cm⁻¹)")
    else:
        ax.plot(np.arange(1, len(model) + 1), model, "o", color=MODEL_COLOR)
        ax.set_xlabel("mode")
        ax.set_ylabel("model frequency (cm⁻¹)")
    result.figures.append(sink.save(figure, "modes", "Normal-mode frequencies (cm⁻¹, "
                                    "imaginary as negative): model against reference, each at "
                                    "its own minimum.", {who: f for who, f in found.items()}))
