"""LAMMPS (pair_style mlff) against the ASE calculator: 2048-atom Cu, 1000 steps of NVT.

    python benchmarks/lammps_speed.py --out bench-out/lammps
    python benchmarks/lammps_speed.py --out bench-out/lammps --model bench-out/lammps/train/model.mlff

1. A Cu model: PaiNN (16 features, 2 layers, 4 Å, float32) trained for a few minutes on
   EMT labels of rattled, strained fcc cells (or --model FILE).
2. `mlff deploy` (builds the plugin if needed), 2048 atoms (8x8x8 cubic fcc cells).
3. Step 0 with `lmp`, serial and `mpirun -np 2`, of the model deployed in float64 and in
   its own dtype: energy and forces against the ASE calculator's, MPI against serial.
4. Speed, interleaved so that both sides see the same machine load: in one process,
   20 blocks of [50 LAMMPS steps of NVT (Nose-Hoover, 300 K, 1 fs), then 3 calls of the
   ASE calculator's model (energy, forces, stress; one torch thread)]. LAMMPS ms/step is
   the median over blocks, the ASE model time the median over calls; the ratio is also
   given per block (against that block's ASE calls), whose median is least sensitive to
   a load that changes during the run.
5. The same 1000 steps with the `lmp` command, serial and `mpirun -np 2`: LAMMPS's loop
   time, the final temperature and energies, and how far the MPI trajectory is from the
   serial one. The `lmp` inputs load the plugin with `plugin load` (automatic loading
   off); the in-process runs of 4 load it automatically.

Prints the command, the machine and a Markdown table.

With ``--formats``, instead: the AOTInductor package (``--format aoti``) against
TorchScript in LAMMPS, for the untrained float32 Cu models of benchmarks/lammps_vs_ase.py
(default: MACE max_L 1, NequIP, PaiNN) at each ``--sizes`` (8: 2048 atoms, 13: 8788), one
thread::

    OMP_NUM_THREADS=1 python benchmarks/lammps_speed.py --formats --out bench-out/formats
    OMP_NUM_THREADS=1 python benchmarks/lammps_speed.py --formats --models painn --sizes 8

Each model is deployed in both formats (export and compilation timed), then fresh `lmp`
processes (through the Python module: one warm-up step, ``--format-steps`` timed steps)
alternate between the formats for ``--rounds`` rounds, so both see the same machine load;
ms/step is the median over rounds of each run's median, with the load average at each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

import mlff
from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.lammps.build import plugin_path
from mlff.calculators.lammps.deploy import deploy, write_data_file
from mlff.calculators.lammps.runtime import lammps_environment, lammps_command
from mlff.uq.io import load_model

NVT = """
velocity        all create 300.0 4928459 mom yes rot yes dist gaussian
fix             nvt all nvt temp 300.0 300.0 0.1
timestep        0.001
thermo_style    custom step temp pe etotal press
thermo_modify   format float %.10g
thermo          {thermo}
run             {steps}
write_dump      all custom final.{tag}.dump id x y z fx fy fz modify sort id format float %.17g
"""
STEP0 = """
compute         press all pressure NULL virial
thermo_style    custom step pe c_press[1] c_press[2] c_press[3] c_press[4] c_press[5] c_press[6]
thermo_modify   format float %.17g
dump            d all custom 1 step0.{tag}.dump id x y z fx fy fz
dump_modify     d sort id format float %.17g
run             0
"""


def training_data(path: Path, frames: int, seed: int = 0) -> Path:
    """EMT-labelled rattled and strained fcc Cu cells (32 atoms), as extxyz."""
    import ase.io

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(frames):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        strain = np.eye(3) + rng.normal(scale=0.02, size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(rng.uniform(0.02, 0.15), seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.get_forces()
        atoms.get_stress()
        out.append(atoms)
    ase.io.write(path, out, format="extxyz")
    return path


def train_model(out: Path, minutes: float) -> Path:
    data = training_data(out / "cu_emt.xyz", 200)
    config = {
        "seed": 0, "dtype": "float32",
        "data": {"train": str(data), "valid_fraction": 0.1},
        "model": {"architecture": "painn", "cutoff": 4.0, "num_features": 16, "num_layers": 2,
                  "num_radial": 8},
        "training": {"batch_size": 4, "max_epochs": 1000, "max_minutes": minutes, "lr": 0.003,
                     "loss": {"energy_weight": 1.0, "forces_weight": 100.0}},
    }
    mlff.train(config, out_dir=out / "train", progress=False)
    return out / "train" / "model.mlff"


PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print('peak RSS MiB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,"
            " file=sys.stderr); sys.exit(code)")
PEAK_RSS_MIB: dict[str, float] = {}


def lammps(directory: Path, body: str, nprocs: int, tag: str) -> str:
    """Run the example's structure and model with ``body`` under ``lmp`` (np ranks).

    The input loads the plugin with ``plugin load`` (automatic loading is switched off
    for these runs, to show the explicit way).
    """
    base = (directory / "in.lammps").read_text().split("velocity")[0]
    source = directory / f"in.{tag}"
    source.write_text(f"plugin load {plugin_path()}\n" + base + body.format(tag=tag, thermo=100, steps=0))
    empty = directory / "no-plugins"
    empty.mkdir(exist_ok=True)
    env = lammps_environment({**os.environ, "MLFF_LAMMPS_PLUGIN_DIR": str(empty),
                              "LAMMPS_PLUGIN_PATH": str(empty)})
    # the largest resident set of any process under the command (per rank under mpirun)
    command = [sys.executable, "-c", PEAK_RSS, *lammps_command(source.name, nprocs,
                                                              ["-log", f"log.{tag}"])]
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"LAMMPS failed ({tag}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    PEAK_RSS_MIB[tag] = float(result.stderr.strip().splitlines()[-1].split()[-1])
    return result.stdout


def read_dump(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS"))
    return np.array([[float(v) for v in line.split()] for line in lines[start + 1:]])


def thermo_rows(stdout: str) -> list[list[float]]:
    lines = stdout.splitlines()
    header = max(i for i, line in enumerate(lines) if line.split()[:1] == ["Step"])
    rows = []
    for line in lines[header + 1:]:
        if line.startswith("Loop time"):
            break
        rows.append([float(v) for v in line.split()])
    return rows


def loop_ms_per_step(stdout: str) -> float:
    match = re.search(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", stdout)
    return 1e3 * float(match.group(1)) / int(match.group(2))


def step0_check(directory: Path, model_file: Path, atoms, dtype: str, nprocs: int) -> dict:
    """Energy and forces at step 0: LAMMPS (serial) against ASE, np N against serial."""
    serial = lammps(directory, STEP0, 1, "serial0")
    parallel = lammps(directory, STEP0, nprocs, "mpi0")
    one = read_dump(directory / "step0.serial0.dump")
    many = read_dump(directory / "step0.mpi0.dump")
    frame = atoms.copy()
    frame.positions = one[:, 1:4]
    frame.calc = MLFFCalculator(load_model(model_file), dtype=dtype)
    forces, energy = frame.get_forces(), frame.get_potential_energy()
    lammps_energy = thermo_rows(serial)[-1][1]
    return {
        "force_error": float(np.abs(one[:, 4:7] - forces).max()),
        "force_max": float(np.abs(forces).max()),
        "energy_error": lammps_energy - energy, "energy": energy,
        "mpi_force_error": float(np.abs(many[:, 4:7] - one[:, 4:7]).max()),
        "mpi_energy_error": abs(thermo_rows(parallel)[-1][1] - lammps_energy),
    }


def interleaved_speed(directory: Path, model_file: Path, atoms, steps: int, blocks: int,
                      calls: int) -> dict[str, list[float]]:
    """LAMMPS NVT blocks and ASE model calls, alternating in one process (same load)."""
    from mlff.calculators.lammps.runtime import create_lammps

    calc = MLFFCalculator(model_file)
    graph = calc.atoms_to_graph(atoms)
    calc.model(graph, compute_forces=True, compute_stress=True)  # warm-up
    lmp = create_lammps(["-log", "none", "-screen", "none"])
    previous = os.getcwd()
    os.chdir(directory)
    try:
        base = (directory / "in.lammps").read_text().split("thermo_style")[0]
        lmp.commands_string(base + "thermo 1000\nrun 0\n")
        per_block = steps // blocks
        lammps_ms, ase_ms, calc_ms = [], [], []
        for _ in range(blocks):
            start = time.perf_counter()
            lmp.command(f"run {per_block} pre no post no")
            lammps_ms.append(1e3 * (time.perf_counter() - start) / per_block)
            for _ in range(calls):
                start = time.perf_counter()
                calc.model(graph, compute_forces=True, compute_stress=True)
                ase_ms.append(1e3 * (time.perf_counter() - start))
            start = time.perf_counter()
            calc.calculate(atoms, ["energy", "forces", "stress"])
            calc_ms.append(1e3 * (time.perf_counter() - start))
    finally:
        os.chdir(previous)
        lmp.close()
    return {"lammps_ms": lammps_ms, "ase_ms": ase_ms, "ase_calc_ms": calc_ms}


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    import importlib.metadata as md

    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, load average "
            f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, lammps {md.version('lammps')}, mpich {md.version('mpich')}, "
            f"mlff {mlff.__version__}")


def compare_formats(out: Path, models: list[str], sizes: list[int], steps: int, rounds: int,
                    reuse: list[Path] | None = None) -> int:
    """AOTI against TorchScript in LAMMPS, alternating fresh runs (see the docstring)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from lammps_vs_ase import build_model, cu_atoms, run_child

    print(f"# machine (start): {machine()}")
    rows = []
    for key in models:
        model = build_model(key, out / "models" / f"{key}.mlff")
        deployed: dict[str, Path] = {}
        for n in sizes:
            atoms = cu_atoms(n)
            directories, deploy_s = {}, {}
            for fmt in ("torchscript", "aoti"):
                directories[fmt] = out / f"{key}-{n}-{fmt}"
                if fmt not in deployed and reuse is not None:  # an earlier run's deployment
                    earlier = sorted(d for root in (out, *reuse) for d in root.glob(f"{key}-*-{fmt}")
                                     if (d / "model.json").is_file())
                    if earlier:
                        deployed[fmt] = earlier[0]
                if fmt in deployed:  # the same model: another structure only
                    if deployed[fmt] != directories[fmt]:
                        shutil.copytree(deployed[fmt], directories[fmt], dirs_exist_ok=True)
                    symbols = json.loads((directories[fmt] / "model.json").read_text())["symbols"]
                    write_data_file(atoms, directories[fmt] / "data.lammps", symbols)
                    deploy_s[fmt] = float("nan")
                    continue
                started = time.perf_counter()
                deploy(model, directories[fmt], dtype="float32", structure=atoms, format=fmt)
                deploy_s[fmt] = time.perf_counter() - started
                deployed[fmt] = directories[fmt]
            runs: dict[str, list[dict]] = {"torchscript": [], "aoti": []}
            for k in range(rounds):
                for fmt in (("torchscript", "aoti") if k % 2 == 0 else ("aoti", "torchscript")):
                    record = run_child("--child-lammps", str(directories[fmt]), "--steps", str(steps))
                    record["load"] = os.getloadavg()[0]
                    runs[fmt].append(record)
                    print(f"# {key} {len(atoms)} {fmt}: {json.dumps(record)}", flush=True)
            rows.append((key, len(atoms), runs, deploy_s))
    print(f"# machine (end): {machine()}")
    print()
    print("| model | atoms | TorchScript ms/step: wall (CPU) | AOTI ms/step: wall (CPU) | "
          "TorchScript/AOTI, CPU | peak RSS MiB: TS / AOTI | deploy s: TS / AOTI | "
          "load averages: TS runs, AOTI runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, n, runs, deploy_s in rows:
        ts, ao = runs["torchscript"], runs["aoti"]
        med = {fmt: {q: statistics.median(r[q] for r in rs) for q in ("wall_ms", "cpu_ms", "peak_rss_mib")}
               for fmt, rs in runs.items()}
        loads = ", ".join(f"{r['load']:.1f}" for r in ts + ao)
        print(f"| {key} | {n} | {med['torchscript']['wall_ms']:.0f} ({med['torchscript']['cpu_ms']:.0f}) | "
              f"{med['aoti']['wall_ms']:.0f} ({med['aoti']['cpu_ms']:.0f}) | "
              f"{med['torchscript']['cpu_ms'] / med['aoti']['cpu_ms']:.2f} | "
              f"{med['torchscript']['peak_rss_mib']:.0f} / {med['aoti']['peak_rss_mib']:.0f} | "
              f"{deploy_s['torchscript']:.0f} / {deploy_s['aoti']:.0f} | {loads} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-out/lammps")
    parser.add_argument("--model", default=None, help="a Cu .mlff model (default: train one)")
    parser.add_argument("--train-minutes", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=20, help="interleaved blocks")
    parser.add_argument("--calls", type=int, default=3, help="ASE model calls per block")
    parser.add_argument("--nprocs", type=int, default=2, help="MPI ranks of the parallel run")
    parser.add_argument("--formats", action="store_true",
                        help="AOTI against TorchScript in LAMMPS instead (see above)")
    parser.add_argument("--models", nargs="+", default=["mace-L1", "nequip", "painn"],
                        help="with --formats: models of benchmarks/lammps_vs_ase.py")
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 13],
                        help="with --formats: n of n x n x n fcc cells (8: 2048 atoms)")
    parser.add_argument("--rounds", type=int, default=3, help="with --formats: runs per format")
    parser.add_argument("--format-steps", type=int, default=3,
                        help="with --formats: timed steps per run")
    parser.add_argument("--reuse", nargs="*", type=Path, default=None, metavar="DIR",
                        help="with --formats: reuse the deployments of an earlier run in --out "
                        "or in the --out folders DIR (the same models: copy its models/ too) "
                        "instead of deploying again; deploy s is then nan")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"# command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} "
          f"{' '.join([Path(sys.executable).name, *sys.argv])}")
    if args.formats:
        return compare_formats(out, args.models, args.sizes, args.format_steps, args.rounds,
                               None if args.reuse is None else [d.resolve() for d in args.reuse])
    print(f"# machine (start): {machine()}")

    model_file = Path(args.model) if args.model else train_model(out, args.train_minutes)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((8, 8, 8))
    atoms.rattle(0.03, seed=7)
    started = time.perf_counter()
    result = deploy(model_file, out / "deploy", structure=atoms, format="torchscript")
    deploy_s = time.perf_counter() - started
    directory = result.directory
    metadata = json.loads(result.metadata.read_text())

    # step 0: LAMMPS against ASE, MPI against serial; float64 and the model's dtype
    checks = {}
    for dtype in ("float64", metadata["dtype"]):
        if dtype in checks:
            continue
        directory = out / f"deploy-{dtype}"
        deploy(model_file, directory, structure=atoms, dtype=dtype)
        checks[dtype] = step0_check(directory, model_file, atoms, dtype, args.nprocs)

    interleaved = interleaved_speed(result.directory, model_file, atoms, args.steps,
                                    blocks=args.blocks, calls=args.calls)

    runs = {}
    for tag, nprocs in (("serial", 1), ("mpi", args.nprocs)):
        body = NVT.replace("{steps}", str(args.steps)).replace("{thermo}", "100")
        stdout = lammps(result.directory, body, nprocs, tag)
        runs[tag] = {"ms": loop_ms_per_step(stdout), "last": thermo_rows(stdout)[-1],
                     "final": read_dump(result.directory / f"final.{tag}.dump")}
    drift = np.abs(runs["mpi"]["final"][:, 1:4] - runs["serial"]["final"][:, 1:4]).max()

    print(f"# machine (end): {machine()}")
    print(f"# model: {model_file} ({metadata['dtype']}, cutoff {metadata['cutoff']} Å, "
          f"{metadata['num_message_passing']} layers; {metadata['source'].get('architecture')}); "
          f"first deploy {deploy_s:.1f} s")
    print()
    lmp_ms, ase_ms = interleaved["lammps_ms"], interleaved["ase_ms"]
    print("| quantity | value |")
    print("| --- | --- |")
    print(f"| interleaved: LAMMPS ms/step, median of {args.blocks} blocks of "
          f"{args.steps // args.blocks} NVT steps (min) | {statistics.median(lmp_ms):.1f} ({min(lmp_ms):.1f}) |")
    print(f"| interleaved: ASE calculator model call, ms, median of {len(ase_ms)} (min) | "
          f"{statistics.median(ase_ms):.1f} ({min(ase_ms):.1f}) |")
    paired = [lmp / statistics.median(ase) for lmp, ase in
              zip(lmp_ms, (ase_ms[k * args.calls:(k + 1) * args.calls] for k in range(args.blocks)))]
    print(f"| **LAMMPS ms/step / ASE model time**: ratio of medians; of minima; median of "
          f"per-block ratios | **{statistics.median(lmp_ms) / statistics.median(ase_ms):.2f}**; "
          f"{min(lmp_ms) / min(ase_ms):.2f}; {statistics.median(paired):.2f} |")
    print(f"| ASE calculator, whole step incl. neighbour list, ms (median) | "
          f"{statistics.median(interleaved['ase_calc_ms']):.1f} |")
    print(f"| `lmp` serial, {args.steps} steps NVT, ms/step (loop time) | {runs['serial']['ms']:.1f} |")
    print(f"| `mpirun -np {args.nprocs} lmp`, {args.steps} steps NVT, ms/step | {runs['mpi']['ms']:.1f} |")
    for tag, label in (("serial", "`lmp` serial"), ("mpi", f"`mpirun -np {args.nprocs} lmp`, per rank")):
        print(f"| {label}: peak RSS, MiB (KiB per atom) | {PEAK_RSS_MIB[tag]:.0f} "
              f"({PEAK_RSS_MIB[tag] * 1024 / len(atoms):.0f}) |")
    for dtype, check in checks.items():
        print(f"| step 0, {dtype}: max abs force difference LAMMPS - ASE, eV/Å (largest force) | "
              f"{check['force_error']:.2e} ({check['force_max']:.2f}) |")
        print(f"| step 0, {dtype}: energy LAMMPS - ASE, eV (energy) | "
              f"{check['energy_error']:.2e} ({check['energy']:.4f}) |")
        print(f"| step 0, {dtype}: max abs force difference np {args.nprocs} - serial, eV/Å | "
              f"{check['mpi_force_error']:.2e} |")
        print(f"| step 0, {dtype}: energy np {args.nprocs} - serial, eV | {check['mpi_energy_error']:.2e} |")
    print(f"| after {args.steps} steps: max position difference np {args.nprocs} - serial, Å | {drift:.2e} |")
    for tag, label in (("serial", "serial"), ("mpi", f"np {args.nprocs}")):
        last = runs[tag]["last"]
        print(f"| after {args.steps} steps, {label}: T (K), Epot (eV), Etot (eV) | "
              f"{last[1]:.1f}, {last[2]:.3f}, {last[3]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
