"""LAMMPS (pair_style mlff) beside the ASE calculator: time per step and peak memory, per model.

    OMP_NUM_THREADS=1 python benchmarks/lammps_vs_ase.py --out bench-out/lammps-vs-ase
    OMP_NUM_THREADS=1 python benchmarks/lammps_vs_ase.py --sizes 8 13 --models mace-L1

For every model (untrained, float32, one element Cu, 5 Å cutoff: MACE 32 channels,
correlation 3, 2 layers at max_L 0 and 1; NequIP 32 features, l_max 1, 3 layers; PaiNN
64 features, 3 layers) and every size (n x n x n cubic fcc cells, 4 n³ atoms, rattled):

- LAMMPS: `mlff deploy` (float32), then in a fresh process the deployed example input
  with `pair_style mlff`, one warm-up step, then ``--steps`` steps of NVT;
- ASE: in a fresh process, the calculator (energy, forces, stress; neighbour list with
  skin as in MD), one warm-up call, then ``--steps`` calls, each after moving every atom
  by up to 1e-3 Å.

Each child reports wall and CPU time per step (CPU time is the less sensitive to other
load on a shared machine) and its peak resident set (``ru_maxrss``: the Python
interpreter, torch and the model included on both sides). Both run one torch thread.
The two children of a row run one after the other, so they see about the same load.
Prints the command, the machine and a Markdown table; records go to OUT/records.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODELS = {
    "mace-L0": ("mace", {"num_channels": 32, "max_L": 0, "correlation": 3, "num_interactions": 2}),
    "mace-L1": ("mace", {"num_channels": 32, "max_L": 1, "correlation": 3, "num_interactions": 2}),
    "nequip": ("nequip", {"num_layers": 3, "l_max": 1, "num_features": 32, "parity": True}),
    "painn": ("painn", {"num_features": 64, "num_layers": 3}),
    "schnet": ("schnet", {"num_features": 64, "num_filters": 64, "num_layers": 3}),
    "allegro": ("allegro", {"num_layers": 2, "l_max": 1, "num_tensor_features": 16, "latent_dim": 64}),
    "deeppot": ("deeppot", {"embedding_neurons": [25, 50, 100], "axis_neurons": 16,
                            "fitting_neurons": [240, 240, 240]}),
    # SevenNet-like: even harmonics only (as SevenNet-0), species tensor-product self-connection
    "sevennet": ("sevennet", {"num_layers": 3, "num_features": 32, "l_max": 1, "parity": False,
                              "self_connection": "nequip"}),
}
CUTOFF = 5.0


def cu_atoms(n: int):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n, n, n))
    atoms.rattle(0.03, seed=7)
    return atoms


def build_model(key: str, path: Path) -> Path:
    import torch

    from mlff.models import Potential, build_model, get_architecture, save_model

    if path.exists():
        return path
    architecture, extra = MODELS[key]
    torch.manual_seed(0)
    config = get_architecture(architecture).Config
    hyperparameters = {"architecture": architecture, "cutoff": CUTOFF, **extra}
    if "avg_num_neighbors" in config.model_fields:
        hyperparameters["avg_num_neighbors"] = 42.0
    hyperparameters = config.model_validate(hyperparameters).model_dump()
    potential = Potential(build_model(hyperparameters, 1), hyperparameters, [29], [0.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(potential.to(torch.float32), path)
    return path


def report(wall: list[float], cpu: list[float], **extra) -> None:
    import statistics

    print(json.dumps({"wall_ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      **extra}))


def child_ase(model: str, n: int, steps: int) -> None:
    import numpy as np
    import torch

    from mlff.calculators.ase import MLFFCalculator

    torch.set_num_threads(1)
    atoms = cu_atoms(n)
    atoms.calc = MLFFCalculator(model, dtype="float32", threads=1)
    rng = np.random.default_rng(0)
    wall, cpu = [], []
    for step in range(steps + 1):
        atoms.positions += rng.uniform(-1e-3, 1e-3, atoms.positions.shape)
        start, start_cpu = time.perf_counter(), time.process_time()
        atoms.get_forces(), atoms.get_stress()
        if step:  # the first call is the warm-up
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    report(wall, cpu)


def child_lammps(directory: str, steps: int) -> None:
    from mlff.calculators.lammps.runtime import create_lammps

    os.chdir(directory)
    lmp = create_lammps(["-log", "none", "-screen", "none"])
    base = Path("in.lammps").read_text().split("thermo_style")[0]
    lmp.commands_string(base + "thermo_style custom step pe press\nthermo 1000\nrun 1\n")
    wall, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        lmp.command("run 1 pre no post no")
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    report(wall, cpu)
    lmp.close()


def run_child(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                            env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-out/lammps-vs-ase")
    parser.add_argument("--models", nargs="+", default=["mace-L0", "mace-L1", "nequip", "painn"],
                        choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[8],
                        help="n of n x n x n fcc cells (8: 2048 atoms, 13: 8788)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--format", choices=("auto", "aoti", "torchscript"), default="auto",
                        help="deployment format of the LAMMPS side (default: mlff deploy's)")
    parser.add_argument("--child-ase", nargs=2, metavar=("MODEL", "N"))
    parser.add_argument("--child-lammps", metavar="DIR")
    args = parser.parse_args()
    if args.child_ase:
        child_ase(args.child_ase[0], int(args.child_ase[1]), args.steps)
        return 0
    if args.child_lammps:
        child_lammps(args.child_lammps, args.steps)
        return 0

    sys.path.insert(0, str(Path(__file__).parent))
    from lammps_speed import machine

    from mlff.calculators.lammps.deploy import deploy

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"# command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} "
          f"{' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"# machine (start): {machine()}")
    rows = []
    for key in args.models:
        model = build_model(key, out / "models" / f"{key}.mlff")
        for n in args.sizes:
            atoms = cu_atoms(n)
            directory = out / f"deploy-{key}-{n}"
            fmt = deploy(model, directory, dtype="float32", structure=atoms,
                         format=args.format).format
            lammps = run_child("--child-lammps", str(directory), "--steps", str(args.steps))
            ase = run_child("--child-ase", str(model), str(n), "--steps", str(args.steps))
            record = {"model": key, "atoms": len(atoms), "format": fmt, "load": os.getloadavg()[0],
                      "lammps": lammps, "ase": ase}
            with open(out / "records.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            rows.append(record)
            print(f"# {json.dumps(record)}", flush=True)
    print(f"# machine (end): {machine()}")
    print()
    print("| model | atoms | format | LAMMPS ms/step: wall (CPU) | ASE ms/call: wall (CPU) | LAMMPS/ASE, CPU | "
          "peak RSS MiB: LAMMPS / ASE | KiB/atom: LAMMPS / ASE | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        lmp, ase, n = r["lammps"], r["ase"], r["atoms"]
        print(f"| {r['model']} | {n} | {r['format']} | {lmp['wall_ms']:.0f} ({lmp['cpu_ms']:.0f}) | "
              f"{ase['wall_ms']:.0f} ({ase['cpu_ms']:.0f}) | {lmp['cpu_ms'] / ase['cpu_ms']:.2f} | "
              f"{lmp['peak_rss_mib']:.0f} / {ase['peak_rss_mib']:.0f} | "
              f"{lmp['peak_rss_mib'] * 1024 / n:.0f} / {ase['peak_rss_mib'] * 1024 / n:.0f} | "
              f"{r['load']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
