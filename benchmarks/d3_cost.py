"""What D3 dispersion costs per MD step: simple-dftd3 (the ASE calculator's D3) and LAMMPS's
``pair_style dispersion/d3`` (what ``mlff deploy`` writes for a model trained minus D3).

    OMP_NUM_THREADS=1 python benchmarks/d3_cost.py [--sizes 1000 10648] [--steps 3] [--json OUT]

The structures are rattled rock-salt NaCl cells (5x5x5 and 11x11x11 conventional cells:
1000 and 10,648 atoms), PBE-D3(BJ), two-body, simple-dftd3's default cutoffs (31.75 Å
pairs, 21.17 Å coordination numbers) in both codes. simple-dftd3: energy, forces and
stress per call, the structure reused between calls as the ASE calculator does in MD
(best of ``--steps`` calls). LAMMPS: ``run STEPS`` of NVE with only dispersion/d3,
one MPI rank; the loop time per step, neighbour-list rebuilds included as they fall.
Prints one line per size and code, with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk

from mlff.calculators.lammps.deploy import write_data_file
from mlff.calculators.lammps.dispersion import lammps_dispersion, neighbor_pages
from mlff.calculators.lammps.runtime import create_lammps
from mlff.data.dispersion import D3, D3Settings

SETTINGS = D3Settings(method="d3bj", functional="pbe")


def structure(num_atoms: int):
    """Rattled NaCl with about ``num_atoms`` atoms (8 per conventional cell)."""
    repeat = max(1, round((num_atoms / 8) ** (1 / 3)))
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=0)
    return atoms


def time_simple_dftd3(atoms, steps: int) -> float:
    """Best seconds per energy + forces + stress call (structure reused, as in MD)."""
    d3 = D3(SETTINGS)
    d3.compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc)  # set-up
    best = float("inf")
    for step in range(steps):
        positions = atoms.positions + 0.001 * (step + 1)
        start = time.perf_counter()
        d3.compute(atoms.numbers, positions, atoms.cell[:], atoms.pbc)
        best = min(best, time.perf_counter() - start)
    return best


def time_lammps(atoms, steps: int) -> float:
    """Seconds per step of LAMMPS's dispersion/d3 alone (NVE, one rank)."""
    symbols = sorted(set(atoms.get_chemical_symbols()))
    pair = lammps_dispersion(SETTINGS, symbols)
    one, page = neighbor_pages(SETTINGS.cutoff)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data_file(atoms, Path(tmp) / "data.lammps", symbols)
        lmp = create_lammps()
        lmp.commands_string("\n".join([
            "units metal", "atom_style atomic", "boundary p p p", f"read_data {data}",
            f"neigh_modify one {one} page {page}", f"pair_style {pair['pair_style']}",
            f"pair_coeff * * {' '.join(symbols)}", "timestep 0.001", "fix nve all nve",
            "run 0",
        ]))
        start = time.perf_counter()
        lmp.command(f"run {steps} pre no post no")
        seconds = (time.perf_counter() - start) / steps
        lmp.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10648])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"D3(BJ)/PBE cost per step; {machine}")
    rows = []
    for size in args.sizes:
        atoms = structure(size)
        for code, timer in (("simple-dftd3", time_simple_dftd3), ("lammps dispersion/d3", time_lammps)):
            seconds = timer(atoms, args.steps)
            rows.append({"atoms": len(atoms), "code": code, "seconds_per_step": seconds})
            print(f"{len(atoms):6d} atoms  {code:22s} {seconds * 1000:9.1f} ms/step  "
                  f"({seconds / len(atoms) * 1e6:.1f} µs/atom)", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    assert all(np.isfinite(r["seconds_per_step"]) for r in rows)


if __name__ == "__main__":
    main()
