"""Cost per structure of the periodic DFT oracles on rattled diamond silicon.

    OMP_NUM_THREADS=1 python benchmarks/dft_cost.py --codes gpaw,cp2k --atoms 16,64 \
        --ranks 1 --out bench-out/dft-cost

Labels one rattled diamond-silicon cell (8, 16 or 64 atoms: the conventional cube, 2x1x1
and 2x2x2 of it; every atom rattled by 0.05 Å, seed 0) once per code, size and number of
MPI ranks, with the settings a user gets:

- GPAW: ``examples/silicon/oracle.yaml`` (PBE, plane waves 400 eV, k-point density 4.0);
- CP2K: the ``type: cp2k`` defaults (PBE, DZVP-MOLOPT-SR-GTH, 400 Ry, k-point density 3.0).

Each calculation runs in a fresh process (``mpiexec -n RANKS`` for GPAW; CP2K's shell
behind ``mpirun -np RANKS``), as one label of ``mlff label`` does, with one OpenMP thread
per rank. It prints the command, the machine and a Markdown table: wall seconds per
structure (start-up included), SCF iterations (read from the code's own log), the k-point
mesh, the energy per atom and the largest force.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from ase.build import bulk

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "examples" / "silicon" / "oracle.yaml"
REPEATS = {8: (1, 1, 1), 16: (2, 1, 1), 64: (2, 2, 2)}


def silicon(atoms: int, rattle: float = 0.05, seed: int = 0):
    """A rattled diamond-silicon cell of ``atoms`` atoms (a = 5.43 Å)."""
    cell = bulk("Si", "diamond", a=5.43, cubic=True) * REPEATS[atoms]
    cell.rattle(rattle, seed=seed)
    return cell


def settings(code: str, ranks: int) -> dict:
    """The oracle settings measured: the shipped example (GPAW), the defaults (CP2K)."""
    if code == "gpaw":
        config = yaml.safe_load(EXAMPLE.read_text())
    else:
        config = {"type": "cp2k"}
    config["ranks"] = ranks
    config.pop("timeout", None)
    return config


def scf_iterations(code: str, folder: Path) -> int:
    """SCF iterations of the one calculation whose log is in ``folder``."""
    log, pattern = ((folder / "gpaw.txt", r"Converged in\s+(\d+) steps") if code == "gpaw"
                    else (folder / "cp2k.out", r"SCF run converged in\s+(\d+) steps"))
    steps = re.findall(pattern, log.read_text())
    if not steps:
        raise RuntimeError(f"no converged SCF in {log}")
    return sum(int(s) for s in steps)


def one(code: str, atoms: int, ranks: int, folder: Path) -> None:
    """Label one cell in this process (every MPI rank); rank 0 writes ``result.json``."""
    from mlff.oracles.calculators import make_calculator
    from mlff.oracles.config import load_oracle_config
    from mlff.oracles.cp2k import kpoint_mesh

    config = load_oracle_config(settings(code, ranks))
    structure = silicon(atoms)
    structure.calc = make_calculator(config, str(folder))
    energy = structure.get_potential_energy()
    forces = structure.get_forces()
    structure.get_stress()
    if code == "cp2k":
        structure.calc.close()
    if os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")) != "0":
        return
    (folder / "result.json").write_text(json.dumps({
        "energy_per_atom": energy / atoms, "max_force": float(np.abs(forces).max()),
        "mesh": kpoint_mesh(config, structure), "scf": scf_iterations(code, folder)}))


def measure(code: str, atoms: int, ranks: int, out: Path) -> dict:
    """Run :func:`one` in a fresh process; its wall time and results."""
    folder = out / f"{code}-{atoms}-{ranks}"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher: list[str] = []
    if code == "gpaw" and ranks > 1:
        local = Path(sys.executable).parent / "mpiexec"
        launcher = [str(local) if local.is_file() else "mpiexec", "-n", str(ranks)]
        env["GPAW_MPI_BACKEND"] = "cgpaw"
    start = time.perf_counter()
    subprocess.run([*launcher, sys.executable, __file__, "one", code, str(atoms), str(ranks),
                    str(folder)], check=True, env=env)
    wall = time.perf_counter() - start
    return {"code": code, "atoms": atoms, "ranks": ranks, "wall": wall,
            **json.loads((folder / "result.json").read_text())}


def table(rows: list[dict]) -> str:
    """The Markdown table of :func:`measure`'s rows."""
    lines = ["| code | atoms | k-points | ranks | wall (s) | SCF iterations | E (eV/atom) "
             "| max force (eV/Å) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        mesh = "x".join(map(str, r["mesh"])) if r["mesh"] else "Γ"
        lines.append(f"| {r['code']} | {r['atoms']} | {mesh} | {r['ranks']} | {r['wall']:.0f} "
                     f"| {r['scf']} | {r['energy_per_atom']:.4f} | {r['max_force']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        code, atoms, ranks, folder = sys.argv[2:6]
        one(code, int(atoms), int(ranks), Path(folder))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", default="gpaw,cp2k")
    parser.add_argument("--atoms", default="16,64", help="8, 16 and/or 64")
    parser.add_argument("--ranks", default="1", help="MPI ranks per calculation: 1,2")
    parser.add_argument("--out", type=Path, default=Path("bench-out/dft-cost"))
    args = parser.parse_args()
    print("command: OMP_NUM_THREADS=1 python benchmarks/dft_cost.py " + " ".join(sys.argv[1:]))
    print(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    rows = []
    for atoms in (int(a) for a in args.atoms.split(",")):
        for code in args.codes.split(","):
            for ranks in (int(r) for r in args.ranks.split(",")):
                rows.append(measure(code, atoms, ranks, args.out))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows))


if __name__ == "__main__":
    main()
