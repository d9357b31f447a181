"""Check 4, structure: radial distribution functions of the model's NVT MD against a
reference trajectory, or against the reference calculator's own short NVT MD run with the
same settings (same start, velocities and thermostat seed).

For a structure periodic in 3D, g_ab(r) = V / (N_a N_b) · n_ab(r) / (4π r² Δr), averaged
over frames, where n_ab counts the ordered pairs (i of element a, j of element b) at
distance r; g → 1 at large r. For a molecule (not 3D-periodic) the same counts are shown
as a pair-distance distribution normalised to unit area (1/Å). ``r_max`` is capped at half
the smallest cell width, so that no pair is counted twice through periodic images.

Figures of merit for each element pair: the position of the first peak (Å) for both, and
the RMS difference of the two curves over the bins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.data import chemical_symbols
from ase.neighborlist import neighbor_list

from mlff.errors import ConfigError, DataError
from mlff.md.run import make_integrator, set_initial_velocities
from mlff.validate.figures import MODEL_COLOR, REFERENCE_COLOR, FigureSink, new_figure
from mlff.validate.result import CheckResult, Headline, Table, compare, fmt

NAME = "rdf"
TITLE = "Structure: radial distribution function"


@dataclass
class RDFOptions:
    """Settings of the RDF check.

    Attributes:
        timestep_fs: MD timestep, fs.
        time_ps: length of each NVT run (model and reference), ps.
        equilibration_ps: leading part of each run left out of the averages, ps.
        temperature_K: Langevin target and initial temperature, K.
        friction_per_fs: Langevin friction, 1/fs.
        sample_interval: steps between the frames averaged.
        r_max: largest distance, Å (capped at half the smallest cell width).
        bins: histogram bins over [0, r_max].
        max_peak_shift_A: accepted |Δ first-peak position| in the summary, Å.
        seed: seed of the velocities and thermostat noise (the same for both runs).
    """

    timestep_fs: float = 1.0
    time_ps: float = 2.0
    equilibration_ps: float = 0.5
    temperature_K: float = 300.0
    friction_per_fs: float = 0.01
    sample_interval: int = 10
    r_max: float = 6.0
    bins: int = 120
    max_peak_shift_A: float = 0.05
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        for name in ("timestep_fs", "time_ps", "temperature_K", "friction_per_fs", "r_max"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"RDF check: {name} = {value!r}; give a number > 0.")
        if not 0 <= self.equilibration_ps < self.time_ps:
            raise ConfigError(f"RDF check: equilibration_ps ({self.equilibration_ps:g}) must be "
                              f"at least 0 and shorter than time_ps ({self.time_ps:g}).")
        if self.bins < 2 or self.sample_interval < 1:
            raise ConfigError("RDF check: bins must be >= 2 and sample_interval >= 1.")


@dataclass
class RDF:
    """Radial distribution functions of a set of frames.

    Attributes:
        r: (bins,) bin centres, Å.
        curves: ``"Cu-Cu"`` (and ``"all"``) -> (bins,) g(r), or the pair-distance
            distribution (1/Å) for non-periodic frames.
        periodic: whether the curves are g(r) of a 3D-periodic system.
        frames: number of frames averaged.
    """

    r: np.ndarray
    curves: dict[str, np.ndarray]
    periodic: bool
    frames: int


def usable_r_max(atoms: Atoms, r_max: float) -> float:
    """``r_max`` capped at half the smallest perpendicular width of a 3D-periodic cell, Å."""
    if not atoms.pbc.all():
        return r_max
    volume = abs(atoms.cell.volume)
    a, b, c = atoms.cell.array
    widths = [volume / np.linalg.norm(np.cross(b, c)), volume / np.linalg.norm(np.cross(c, a)),
              volume / np.linalg.norm(np.cross(a, b))]
    return min(r_max, 0.5 * min(widths) * 0.999)


def compute_rdf(frames: Sequence[Atoms], r_max: float, bins: int) -> RDF:
    """The RDF of each element pair (and of all atoms when there are several elements);
    in a molecule, no curve for an element with one atom paired with itself.

    Args:
        frames: snapshots with the same atoms (positions Å, cell rows Å).
        r_max: largest distance, Å; capped by :func:`usable_r_max` of the first frame.
        bins: number of bins over [0, r_max].
    """
    if not frames:
        raise DataError("no frames to compute a radial distribution function from.")
    first = frames[0]
    periodic = bool(first.pbc.all())
    r_max = usable_r_max(first, r_max)
    edges = np.linspace(0.0, r_max, bins + 1)
    shell = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    numbers = first.numbers
    elements = sorted(set(numbers.tolist()))
    # a pair that cannot occur (one atom of an element in a molecule) has no curve
    pairs = [(za, zb) for za, zb in itertools.combinations_with_replacement(elements, 2)
             if periodic or za != zb or (numbers == za).sum() > 1]
    counts = {pair: np.zeros(bins) for pair in pairs}
    total = np.zeros(bins)
    density_norm = {pair: 0.0 for pair in pairs}
    for atoms in frames:
        i, j, d = neighbor_list("ijd", atoms, r_max)
        histogram_all, _ = np.histogram(d, bins=edges)
        total += histogram_all
        for za, zb in pairs:
            mask = (numbers[i] == za) & (numbers[j] == zb)
            histogram, _ = np.histogram(d[mask], bins=edges)
            counts[(za, zb)] += histogram
            n_a, n_b = (numbers == za).sum(), (numbers == zb).sum()
            density_norm[(za, zb)] += (n_a * n_b / abs(atoms.cell.volume) if periodic else 0.0)
    curves: dict[str, np.ndarray] = {}
    for za, zb in pairs:
        name = f"{chemical_symbols[za]}-{chemical_symbols[zb]}"
        curves[name] = _normalise(counts[(za, zb)], shell, density_norm[(za, zb)], edges,
                                  periodic)
    if len(elements) > 1:
        n = len(numbers)
        norm = sum(n * n / abs(a.cell.volume) for a in frames) if periodic else 0.0
        curves["all"] = _normalise(total, shell, norm, edges, periodic)
    return RDF(0.5 * (edges[1:] + edges[:-1]), curves, periodic, len(frames))


def _normalise(counts: np.ndarray, shell: np.ndarray, density_norm: float, edges: np.ndarray,
               periodic: bool) -> np.ndarray:
    """g(r) from pair counts summed over frames (periodic: ``density_norm`` is the sum over
    frames of N_a N_b / V), else a distribution of unit area."""
    if periodic:
        return counts / (density_norm * shell) if density_norm else np.zeros_like(counts)
    area = counts.sum() * (edges[1] - edges[0])
    return counts / area if area else np.zeros_like(counts)


def first_peak(r: np.ndarray, g: np.ndarray) -> float:
    """Position (Å) of the first peak of ``g``: the maximum between the first point that
    reaches half of the curve's highest value and the point where the curve falls below
    half of the running maximum (nan for an empty curve)."""
    if not np.any(g > 0):
        return math.nan
    start = int(np.flatnonzero(g >= 0.5 * g.max())[0])
    end, running = start, g[start]
    while end + 1 < len(g) and g[end + 1] >= 0.5 * running:
        end += 1
        running = max(running, g[end])
    return float(r[start + int(np.argmax(g[start:end + 1]))])


def nvt_frames(calculator: BaseCalculator, structure: Atoms, options: RDFOptions) -> list[Atoms]:
    """Frames of a Langevin NVT run of ``structure`` after equilibration, every
    ``sample_interval`` steps (positions and cell only)."""
    atoms = structure.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(options.seed)
    set_initial_velocities(atoms, options.temperature_K, rng)
    dyn = make_integrator(atoms, "nvt", "langevin", options.timestep_fs, options.temperature_K,
                          1.0, options.friction_per_fs, 100.0, 1000.0, rng)
    skip = round(1000.0 * options.equilibration_ps / options.timestep_fs)
    frames: list[Atoms] = []

    def keep() -> None:
        if dyn.nsteps >= skip:
            frames.append(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc))

    dyn.attach(keep, interval=options.sample_interval)
    dyn.run(max(1, round(1000.0 * options.time_ps / options.timestep_fs)))
    return frames


def run(
    model: BaseCalculator,
    structure: Atoms,
    out_dir,
    reference: BaseCalculator | None = None,
    reference_frames: Sequence[Atoms] | None = None,
    options: RDFOptions | None = None,
) -> CheckResult:
    """RDF of the model's NVT MD against ``reference_frames`` or the reference's own MD.

    Args:
        model: the model's ASE calculator.
        structure: the starting structure (not modified).
        out_dir: folder for the figure.
        reference: the reference calculator; its own NVT run is used when no
            ``reference_frames`` are given.
        reference_frames: a reference trajectory of the same system.
        options: settings; defaults of :class:`RDFOptions`.

    Raises:
        ConfigError: the reference frames hold other atoms than ``structure``.
    """
    options = options or RDFOptions()
    options.check()
    result = CheckResult(NAME, TITLE)
    r_max = usable_r_max(structure, options.r_max)
    source, frames = None, []
    if reference_frames is not None:
        _check_same_atoms(structure, reference_frames)
        source = f"the given reference trajectory ({len(reference_frames)} frames)"
        frames = list(reference_frames)
        r_max = usable_r_max(frames[0], r_max)
    elif reference is not None:
        source = "the reference calculator's own NVT run with the same settings"
        frames = nvt_frames(reference, structure, options)
    model_rdf = compute_rdf(nvt_frames(model, structure, options), r_max, options.bins)
    reference_rdf = None
    if source is not None:
        reference_rdf = compute_rdf(frames, r_max, options.bins)
        result.notes.append(f"Reference: {source}.")
    else:
        result.notes.append("No reference calculator or trajectory: the model's RDF is shown "
                            "alone.")
    result.notes.append(
        f"Model: Langevin NVT of {len(structure)} atoms at {options.temperature_K:g} K, "
        f"{options.time_ps:g} ps with a {options.timestep_fs:g} fs step; frames after "
        f"{options.equilibration_ps:g} ps, every {options.sample_interval} steps "
        f"({model_rdf.frames} frames).")
    if not model_rdf.periodic:
        result.notes.append("The structure is not periodic in 3D: the curves are pair-distance "
                            "distributions (unit area, 1/Å), not g(r).")
    result.summary = _summary(model_rdf, reference_rdf)
    result.headlines = [_headline(pair, row, options) for pair, row in
                        result.summary["pairs"].items()]
    result.tables.append(Table(
        "First peak of each pair's RDF, and the RMS difference of the curves",
        ["pair", "model peak (Å)", "reference peak (Å)", "RMS Δg"],
        [[pair, fmt(row["model_first_peak_A"]), fmt(row.get("reference_first_peak_A")),
          fmt(row.get("rms_difference"))] for pair, row in result.summary["pairs"].items()]))
    result.figures.append(_figure(model_rdf, reference_rdf, FigureSink(out_dir, NAME)))
    return result


def _check_same_atoms(structure: Atoms, frames: Sequence[Atoms]) -> None:
    if not frames:
        raise ConfigError("RDF check: the reference trajectory has no frames.")
    if sorted(frames[0].numbers.tolist()) != sorted(structure.numbers.tolist()):
        raise ConfigError(
            f"RDF check: the reference trajectory holds {frames[0].get_chemical_formula()} but "
            f"the MD structure is {structure.get_chemical_formula()}; give a trajectory of the "
            "same system.")


def _summary(model: RDF, reference: RDF | None) -> dict[str, Any]:
    pairs = {}
    for pair, g in model.curves.items():
        row: dict[str, Any] = {"model_first_peak_A": first_peak(model.r, g)}
        if reference is not None and pair in reference.curves:
            g_ref = reference.curves[pair]
            row["reference_first_peak_A"] = first_peak(reference.r, g_ref)
            row["rms_difference"] = float(np.sqrt(np.mean((g - g_ref) ** 2)))
        pairs[pair] = row
    return {"periodic": model.periodic, "r_max_A": float(model.r[-1]),
            "model_frames": model.frames,
            "reference_frames": reference.frames if reference is not None else 0,
            "pairs": pairs}


def _headline(pair: str, row: dict[str, Any], options: RDFOptions) -> Headline:
    return compare(f"RDF first peak {pair}", "Å", row["model_first_peak_A"],
                   row.get("reference_first_peak_A"),
                   absolute_tolerance=options.max_peak_shift_A)


def _figure(model: RDF, reference: RDF | None, sink: FigureSink):
    pairs = list(model.curves)
    figure, axes = new_figure(len(pairs), 1, width=4.2, height=3.4)
    axes = np.atleast_1d(axes)
    data: dict[str, Any] = {"r_A": model.r, "periodic": model.periodic, "model": model.curves}
    for ax, pair in zip(axes, pairs, strict=True):
        ax.plot(model.r, model.curves[pair], color=MODEL_COLOR, label="model")
        if reference is not None and pair in reference.curves:
            ax.plot(reference.r, reference.curves[pair], color=REFERENCE_COLOR, ls="--",
                    label="reference")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)" if model.periodic else "pair distances (1/Å)")
        ax.set_title(pair, fontsize="medium")
        ax.legend(fontsize="small")
    if reference is not None:
        data["reference"] = reference.curves
    return sink.save(figure, "rdf", "Radial distribution function of each element pair: the "
                     "model's NVT MD (solid) against the reference (dashed).", data)
