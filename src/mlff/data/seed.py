"""A first, diverse set of structures from one crystal: bulk, surfaces and defects.

:func:`seed_structures` makes, from one bulk crystal (any cell ASE can repeat), each
structure tagged with ``info["config_type"]``:

- ``bulk_strained``: the supercell under a random symmetric strain (up to ``strain``),
  atoms rattled;
- ``bulk_rattled``: the supercell with every atom displaced (Gaussian, ``rattle`` Å);
- ``surface_<hkl>``: slabs of the low-index surfaces of the input cell (Miller indices
  of *that* cell: give the conventional cell), ``layers`` thick with ``vacuum`` Å on each
  side, periodic in-plane, rattled;
- ``vacancy``: the supercell less one random atom, rattled;
- ``interstitial``: the supercell plus one atom of the majority element at the point
  farthest from every atom, rattled;
- ``melt_quench``: the supercell melted at ``melt_K`` and quenched with a calculator
  (an oracle, a trained model) by Langevin MD: an amorphous cell; without a calculator,
  ``random_packed``: atoms placed at random at the crystal's density, no two closer than
  ``min_distance`` Å (an amorphous-like start for MD or labelling).

Every random choice comes from ``seed``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from ase import Atoms, units
from ase.build import surface
from ase.calculators.calculator import BaseCalculator

from mlff.errors import DataError

LOW_INDEX: tuple[tuple[int, int, int], ...] = ((1, 0, 0), (1, 1, 0), (1, 1, 1))


def supercell_repeats(atoms: Atoms, min_length: float) -> tuple[int, int, int]:
    """Repeats along each cell vector so that every perpendicular width is ≥ ``min_length`` Å."""
    cell = atoms.cell
    volume = abs(cell.volume)
    widths = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))
              for i in range(3)]
    return tuple(max(1, int(np.ceil(min_length / w - 1e-9))) for w in widths)  # type: ignore


def _rattled(atoms: Atoms, amplitude: float, rng: np.random.Generator) -> Atoms:
    atoms = atoms.copy()
    atoms.positions += rng.normal(0.0, amplitude, size=atoms.positions.shape)
    return atoms


def _tag(atoms: Atoms, config_type: str) -> Atoms:
    atoms.info["config_type"] = config_type
    return atoms


def strained(atoms: Atoms, strain: float, rattle: float, rng: np.random.Generator) -> Atoms:
    """A copy under a random symmetric strain (components uniform in ±``strain``), rattled."""
    epsilon = rng.uniform(-strain, strain, size=(3, 3))
    epsilon = (epsilon + epsilon.T) / 2
    result = atoms.copy()
    result.set_cell(atoms.cell.array @ (np.eye(3) + epsilon), scale_atoms=True)
    return _rattled(result, rattle, rng)


def largest_void(atoms: Atoms, grid: int = 12) -> np.ndarray:
    """The point (Å) of a ``grid``³ fractional grid farthest from every atom (periodic)."""
    from ase.geometry import get_distances

    axis = (np.arange(grid) + 0.5) / grid
    fractional = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    points = fractional @ atoms.cell.array
    _, distances = get_distances(points, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return points[int(np.argmax(distances.min(axis=1)))]


def random_packed(atoms: Atoms, min_distance: float, rng: np.random.Generator,
                  tries: int = 20000) -> Atoms:
    """The atoms of ``atoms`` placed at random in its cell, no two closer than
    ``min_distance`` Å (periodic).

    Raises:
        DataError: no such placement found (``min_distance`` too large for the density).
    """
    from ase.geometry import get_distances

    placed: list[np.ndarray] = []
    for _ in range(tries):
        if len(placed) == len(atoms):
            break
        point = rng.random(3) @ atoms.cell.array
        if placed:
            _, d = get_distances(point[None], np.array(placed), cell=atoms.cell, pbc=atoms.pbc)
            if d.min() < min_distance:
                continue
        placed.append(point)
    if len(placed) < len(atoms):
        raise DataError(f"could not place {len(atoms)} atoms at random with no two closer than "
                        f"{min_distance} Å; lower min_distance.")
    result = atoms.copy()
    result.positions = np.array(placed)
    return result


def melt_quench(atoms: Atoms, calculator: BaseCalculator, melt_K: float, steps: int,
                timestep_fs: float, rng: np.random.Generator) -> Atoms:
    """``atoms`` melted at ``melt_K`` for ``steps`` Langevin steps, then cooled linearly
    to 300 K over as many, with ``calculator``; returns the quenched structure."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    work = atoms.copy()
    work.calc = calculator
    thermalize_momenta(work, temperature_K=melt_K, rng=rng)
    dynamics = Langevin(work, timestep_fs * units.fs, temperature_K=melt_K,
                        friction=0.02 / units.fs, fixcm=False, rng=rng)
    dynamics.run(steps)
    for temperature in np.linspace(melt_K, 300.0, 10):
        dynamics.set_temperature(temperature_K=float(temperature))
        dynamics.run(max(1, steps // 10))
    result = work.copy()
    result.calc = None
    result.set_momenta(None)
    return result


def seed_structures(
    crystal: Atoms,
    *,
    min_length: float = 8.0,
    n_strained: int = 4,
    n_rattled: int = 4,
    strain: float = 0.04,
    rattle: float = 0.08,
    surfaces: Sequence[tuple[int, int, int]] = LOW_INDEX,
    layers: int = 2,
    vacuum: float = 7.5,
    n_vacancies: int = 2,
    n_interstitials: int = 2,
    n_amorphous: int = 1,
    quench_calculator: BaseCalculator | None = None,
    melt_K: float = 3000.0,
    quench_steps: int = 400,
    quench_timestep_fs: float = 2.0,
    min_distance: float | None = None,
    seed: int = 0,
) -> list[Atoms]:
    """Bulk, surface, defect and amorphous structures from ``crystal`` (see the module).

    Args:
        crystal: a bulk crystal, periodic in 3D (positions and cell in Å).
        min_length: the supercell is repeated until each width is at least this, Å.
        n_strained, n_rattled, n_vacancies, n_interstitials, n_amorphous: how many of
            each kind.
        strain: largest strain component (0.04: 4 %).
        rattle: standard deviation of the atom displacements, Å.
        surfaces: Miller indices of the slabs (of ``crystal``'s cell).
        layers: slab thickness in layers (ASE's ``surface``).
        vacuum: vacuum on each side of a slab, Å.
        quench_calculator: melts and quenches the amorphous cells; ``None``: random
            packing instead.
        melt_K, quench_steps, quench_timestep_fs: the melt-quench MD.
        min_distance: closest approach of random packing, Å (default: 0.7 × the
            crystal's nearest-neighbour distance).
        seed: seeds every random choice.

    Returns:
        The structures, each with ``info["config_type"]``.

    Raises:
        DataError: ``crystal`` is not periodic in 3D or has fewer than one atom.
    """
    if len(crystal) == 0 or not crystal.pbc.all():
        raise DataError("seed structures: the crystal must have atoms and be periodic in "
                        "all three directions (a bulk cell).")
    rng = np.random.default_rng(seed)
    base = crystal.copy()
    base.calc = None
    for key in ("config_type",):
        base.info.pop(key, None)
    supercell = base.repeat(supercell_repeats(base, min_length))
    out: list[Atoms] = []
    out += [_tag(strained(supercell, strain, rattle, rng), "bulk_strained")
            for _ in range(n_strained)]
    out += [_tag(_rattled(supercell, rattle, rng), "bulk_rattled") for _ in range(n_rattled)]
    for indices in surfaces:
        slab = surface(base, tuple(indices), layers, vacuum=vacuum, periodic=True)
        in_plane = supercell_repeats(slab, min_length)
        slab = slab.repeat((in_plane[0], in_plane[1], 1))
        out.append(_tag(_rattled(slab, rattle / 2, rng), "surface_" + "".join(map(str, indices))))
    for _ in range(n_vacancies):
        defect = supercell.copy()
        del defect[int(rng.integers(len(defect)))]
        out.append(_tag(_rattled(defect, rattle / 2, rng), "vacancy"))
    majority = Counter(supercell.get_chemical_symbols()).most_common(1)[0][0]
    for _ in range(n_interstitials):
        defect = _rattled(supercell, rattle / 4, rng)
        defect.append(majority)
        defect.positions[-1] = largest_void(defect[:-1])
        out.append(_tag(_rattled(defect, rattle / 4, rng), "interstitial"))
    if n_amorphous:
        if min_distance is None:
            distances = supercell.get_all_distances(mic=True)
            min_distance = 0.7 * float(distances[distances > 1e-6].min())
        for _ in range(n_amorphous):
            packed = random_packed(supercell, min_distance, rng)
            if quench_calculator is None:
                out.append(_tag(packed, "random_packed"))
            else:
                out.append(_tag(melt_quench(packed, quench_calculator, melt_K, quench_steps,
                                            quench_timestep_fs, rng), "melt_quench"))
    return out
