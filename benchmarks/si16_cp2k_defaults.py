"""The displaced-atom Si16 cell with CP2K: the generic recipe against the ``type: cp2k`` defaults.

    OMP_NUM_THREADS=1 python benchmarks/si16_cp2k_defaults.py

The cell: two conventional diamond-silicon cubes (16 atoms), every atom rattled by 0.15 Å
(seed 3), then atom 0 moved towards its nearest neighbour until they are 2.14 Å apart
(the cell of ``tests/oracles/dft.py``). First the generic ``type: ase`` CP2K recipe of
docs/oracles.md (PBE, DZVP-MOLOPT-SR-GTH, 2041 eV = 150 Ry, ASE's default SCF: plain
mixing, no smearing); then the ``type: cp2k`` defaults (400 Ry, k-point density 3.0,
Fermi-Dirac smearing and Broyden mixing), whose forces are checked against central
differences of the same oracle's energy along a generic displacement of all 16 atoms
(step 0.002 Å). The test suite runs the second part at 150 Ry and the Γ point only (the
defaults cost minutes per calculation here); this script runs the defaults themselves.
Prints the command, the machine, each outcome with its wall time, and the force check.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from tests.oracles import dft  # noqa: E402  (the cell and the finite differences)


def main() -> None:
    from mlff.oracles.config import load_oracle_config
    from mlff.oracles.oracle import Oracle

    print("$ " + " ".join(["python", *sys.argv]))
    print(f"# {platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    atoms = dft.silicon16_displaced()

    generic = Oracle(load_oracle_config({
        "type": "ase", "calculator": "ase.calculators.cp2k:CP2K",
        "kwargs": {"command": "cp2k_shell.psmp", "xc": "PBE",
                   "basis_set": "DZVP-MOLOPT-SR-GTH", "pseudo_potential": "GTH-PBE",
                   "cutoff": 2041.0}}))
    start = time.perf_counter()
    failed = generic.label(atoms)
    print(f"generic recipe: ok={failed.ok} after {time.perf_counter() - start:.0f} s: "
          f"{(failed.reason or '')[:200]}")

    oracle = Oracle(load_oracle_config({"type": "cp2k"}))
    start = time.perf_counter()
    result = oracle.label(atoms)
    print(f"type: cp2k defaults: ok={result.ok} after {time.perf_counter() - start:.0f} s"
          + ("" if result.ok else f": {result.reason}"))
    if not result.ok:
        raise SystemExit(1)
    forces = result.atoms.get_forces()
    print(f"  energy {result.atoms.get_potential_energy() / len(atoms):.4f} eV/atom, "
          f"largest force {np.abs(forces).max():.3f} eV/Å")

    def energy(moved):
        labelled = oracle.label(moved)
        if not labelled.ok:
            raise SystemExit(f"displaced cell: {labelled.reason}")
        return labelled.atoms.get_potential_energy()

    direction = dft.generic_direction(atoms)
    start = time.perf_counter()
    numeric = dft.fd_force_along(energy, atoms, direction)
    analytic = float((forces * direction).sum())
    print(f"  F·d analytic {analytic:.6f} eV/Å, central differences {numeric:.6f} eV/Å, "
          f"difference {abs(analytic - numeric):.1e} eV/Å "
          f"(two displaced cells, {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
