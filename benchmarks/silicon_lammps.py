"""A vacancy in 10,647 silicon atoms, in LAMMPS over MPI, with the shipped committee.

    OMP_NUM_THREADS=1 python benchmarks/silicon_lammps.py --steps 1000 --out bench-out/si-vacancy

1. `mlff deploy` of examples/silicon/model.mlff (committee of 3 MACE models) as an
   AOTInductor package in float32 (or ``--deployed DIR``: an earlier deployment of it).
2. Diamond silicon, ``--cells``³ conventional cells (11: 10,648 sites) at the model's
   lattice constant (5.46 Å), one atom near the centre removed.
3. examples/silicon/lammps/in.vacancy under ``mpirun -np --ranks``: NVT (Nosé-Hoover) at
   ``--temperature`` with 2 fs steps, velocities drawn at twice the temperature (half goes
   into the lattice's potential energy), and the committee's per-atom force uncertainty
   σ_i (eV/Å) every step: its maximum and mean in the thermo output, per atom in the dump.
4. The vacancy's site in every dumped frame (Wigner-Seitz: each atom is assigned to the
   nearest site of the perfect lattice; the empty site is the vacancy) and its hops.

Writes OUT/log.lammps, OUT/traj.lammpstrj, OUT/summary.json and OUT/vacancy_md.png
(temperature, committee uncertainty per step, the vacancy's distance from its start),
and prints the command, the machine and the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "silicon"
A_MODEL = 5.46  # Å, the shipped committee's lattice constant (docs/benchmarks.md)


def lattice(cells: int, a: float):
    """The perfect diamond lattice, ``cells``³ conventional cells."""
    return bulk("Si", "diamond", a=a, cubic=True).repeat(cells)


def remove_central_atom(atoms) -> tuple[object, int]:
    """``atoms`` without the atom nearest the cell centre, and that atom's index."""
    centre = atoms.cell.sum(axis=0) / 2
    index = int(np.argmin(np.linalg.norm(atoms.positions - centre, axis=1)))
    vacant = atoms.copy()
    del vacant[index]
    return vacant, index


def read_thermo(log: Path) -> dict[str, np.ndarray]:
    """The thermo table of the run in ``log`` (columns by name)."""
    lines = log.read_text().splitlines()
    header = max(i for i, line in enumerate(lines) if line.split()[:2] == ["Step", "Time"])
    names = lines[header].split()
    rows = []
    for line in lines[header + 1:]:
        if line.startswith("Loop time"):
            break
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError:  # a warning between thermo lines
            continue
    table = np.array([r for r in rows if len(r) == len(names)])
    return {name: table[:, k] for k, name in enumerate(names)}


def read_frames(dump: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(step, box lengths (3,), positions (N, 3) sorted by atom id) of each dumped frame."""
    frames, lines, k = [], dump.read_text().splitlines(), 0
    while k < len(lines):
        step = int(lines[k + 1])
        count = int(lines[k + 3])
        bounds = np.array([[float(v) for v in lines[k + 5 + d].split()[:2]] for d in range(3)])
        columns = lines[k + 8].split()[2:]
        data = np.array([[float(v) for v in line.split()]
                         for line in lines[k + 9:k + 9 + count]])
        data = data[np.argsort(data[:, columns.index("id")])]
        xyz = data[:, [columns.index(c) for c in ("x", "y", "z")]] - bounds[:, 0]
        frames.append((step, bounds[:, 1] - bounds[:, 0], xyz))
        k += 9 + count
    return frames


def vacancy_sites(frames, sites: np.ndarray) -> list[int]:
    """The empty lattice site of each frame (Wigner-Seitz occupation); -1 where the
    occupation is not one empty site and all others single (a Frenkel pair, a melt)."""
    found = []
    for _, box, xyz in frames:
        tree = cKDTree(np.mod(sites, box), boxsize=box)
        _, nearest = tree.query(np.mod(xyz, box))
        occupation = np.bincount(nearest, minlength=len(sites))
        empty = np.flatnonzero(occupation == 0)
        found.append(int(empty[0]) if len(empty) == 1 and occupation.max() == 1 else -1)
    return found


def minimum_image(vector: np.ndarray, box: np.ndarray) -> np.ndarray:
    return vector - box * np.round(vector / box)


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}")


def plot(thermo: dict, steps: list[int], distance: list[float], timestep_ps: float,
         path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    t = thermo["Time"]
    axes[0].plot(t, thermo["Temp"], lw=0.8)
    axes[0].set_ylabel("temperature (K)")
    axes[1].plot(t, thermo["c_maxunc"], lw=0.8, label="max over atoms")
    axes[1].plot(t, thermo["c_meanunc"], lw=0.8, label="mean over atoms")
    axes[1].set_ylabel("committee σ (eV/Å)")
    axes[1].legend(fontsize=8)
    axes[2].plot(np.array(steps) * timestep_ps, distance, marker=".", lw=0.8)
    axes[2].set_ylabel("vacancy from start (Å)")
    axes[2].set_xlabel("time (ps)")
    axes[0].set_title(title, fontsize=9)
    for axis in axes:
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=11, help="conventional cells per side")
    parser.add_argument("--steps", type=int, default=1000, help="MD steps of 2 fs")
    parser.add_argument("--temperature", type=float, default=1200.0, help="K")
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks")
    parser.add_argument("--dump-every", type=int, default=25, help="steps between frames")
    parser.add_argument("--seed", type=int, default=4928459)
    parser.add_argument("--deployed", default=None,
                        help="a folder `mlff deploy` wrote for examples/silicon/model.mlff")
    parser.add_argument("--out", default="bench-out/si-vacancy")
    args = parser.parse_args()

    from mlff.calculators.lammps.deploy import deploy, write_data_file
    from mlff.calculators.lammps.runtime import lammps_command, lammps_environment

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"# command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} "
          f"{' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"# machine (start): {machine()}", flush=True)
    perfect = lattice(args.cells, A_MODEL)
    atoms, removed = remove_central_atom(perfect)
    if args.deployed:
        for path in Path(args.deployed).iterdir():  # the package and its stages
            if path.is_file() and path.name.startswith("model"):
                shutil.copy(path, out / path.name)
    elif not (out / "model.pt2").exists():
        started = time.perf_counter()
        deploy(str(EXAMPLE / "model.mlff"), out, dtype="float32", structure=atoms, format="aoti")
        print(f"# deployed in {time.perf_counter() - started:.0f} s", flush=True)
    symbols = json.loads((out / "model.json").read_text())["symbols"]
    write_data_file(atoms, out / "data.lammps", symbols)
    shutil.copy(EXAMPLE / "lammps" / "in.vacancy", out / "in.vacancy")
    for stale in ("traj.lammpstrj", "log.lammps"):
        (out / stale).unlink(missing_ok=True)
    variables = ["-var", "steps", str(args.steps), "-var", "temperature", str(args.temperature),
                 "-var", "seed", str(args.seed), "-var", "dump_every", str(args.dump_every)]
    command = lammps_command("in.vacancy", args.ranks, variables)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=out, env=lammps_environment(dict(os.environ)),
                            capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
        return 1
    print(f"# machine (end): {machine()}")

    thermo = read_thermo(out / "log.lammps")
    frames = read_frames(out / "traj.lammpstrj")
    sites = perfect.positions
    found = vacancy_sites(frames, sites)
    steps = [step for step, _, _ in frames]
    start = sites[removed]
    box = frames[0][1]
    distance = [float(np.linalg.norm(minimum_image(sites[s] - start, box))) if s >= 0
                else float("nan") for s in found]
    hops = sum(1 for a, b in zip(found, found[1:]) if a >= 0 and b >= 0 and a != b)
    timestep_ps = 0.002
    loop = [line for line in result.stdout.splitlines() if line.startswith("Loop time")]
    summary = {
        "atoms": len(atoms), "ranks": args.ranks, "steps": args.steps,
        "temperature_K": args.temperature, "timestep_fs": 2.0, "wall_s": round(wall, 1),
        "loop": loop[-1] if loop else None,
        "s_per_step": round(wall / max(args.steps, 1), 3),
        "mean_temperature_K_second_half": float(np.mean(thermo["Temp"][len(thermo["Temp"]) // 2:])),
        "max_sigma_eV_per_A": float(np.max(thermo["c_maxunc"])),
        "mean_sigma_eV_per_A": float(np.mean(thermo["c_meanunc"])),
        "vacancy_found_in_frames": sum(s >= 0 for s in found), "frames": len(found),
        "vacancy_site_changes": hops,
        "vacancy_final_distance_A": distance[-1],
        "machine": machine(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(thermo, steps, distance, timestep_ps, out / "vacancy_md.png",
         f"Si, {len(atoms)} atoms with a vacancy, NVT {args.temperature:.0f} K, "
         f"{args.ranks} MPI ranks, committee of 3 (float32)")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
