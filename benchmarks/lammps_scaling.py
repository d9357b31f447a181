"""pair_style mlff over MPI ranks: the receptive-field halo against layer-wise feature exchange.

    OMP_NUM_THREADS=1 python benchmarks/lammps_scaling.py --out bench-out/scaling
    OMP_NUM_THREADS=1 python benchmarks/lammps_scaling.py --models mace-L1 --sizes 8 13 --ranks 1 2

For every model (untrained, float32, Cu, 5 Å cutoff, as benchmarks/lammps_vs_ase.py:
MACE 32 channels, correlation 3, max_L 1, 2 layers; NequIP 32 features, l_max 1,
3 layers; ``mace-large``: 64 channels, max_L 1, 3 layers) and every size (n x n x n cubic
fcc cells, 4 n³ atoms, rattled), `mlff deploy` once, then `lmp` with ``--steps`` steps of
NVE after one warm-up step (``run 1`` then ``run STEPS``; ms/step from LAMMPS's loop
time of the second run), on 1 rank and on every ``--ranks`` > 1 with ``pair_style mlff
parallel halo`` (ghosts to layers x (cutoff + skin)) and ``parallel exchange`` (ghosts to
cutoff + skin, node features exchanged between layers). Peak RSS per rank: GNU time's
maximum resident set of each rank's ``lmp`` process (the largest rank is reported).
``--weak N``: also a weak-scaling row, N cubic cells per rank along x (each run's box
is ranks·N x n x n cells). ``--memory normal low``: also every run with ``pair_style mlff
memory low`` (each layer computed again in the backward pass, one layer's intermediate
results held at a time); speed-up and memory are against one rank with normal memory.

Prints the command, the machine and its load, and a Markdown table; records go to
OUT/records.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lammps_vs_ase import CUTOFF, MODELS, build_model  # noqa: E402

# build_model looks the key up in lammps_vs_ase's table, so the larger model goes there too
MODELS["mace-large"] = ("mace", {"num_channels": 64, "max_L": 1, "correlation": 3,
                                 "num_interactions": 3})
INPUT = """units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style mlff parallel {mode} memory {memory}
pair_coeff * * {model} Cu
neighbor 1.0 bin
velocity all create 300.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.001
thermo_style custom step temp pe etotal press
run 1
run {steps}
"""


def cu_atoms(shape: tuple[int, int, int]):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(shape)
    atoms.rattle(0.03, seed=7)
    return atoms


def run(directory: Path, model: Path, shape: tuple[int, int, int], ranks: int, mode: str,
        steps: int, memory: str = "normal") -> dict:
    """One LAMMPS run: ms/step of the timed run and the largest rank's peak RSS (MiB)."""
    from mlff.calculators.lammps.deploy import write_data_file
    from mlff.calculators.lammps.runtime import lammps_environment, lmp_executable, mpirun_executable

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    data = write_data_file(cu_atoms(shape), directory / "data.lammps", ["Cu"])
    source = directory / "in.lammps"
    source.write_text(INPUT.format(data=data, model=model, mode=mode, steps=steps, memory=memory))
    command = ["/usr/bin/time", "-f", "peak_rss_kib %M", lmp_executable(), "-in", str(source),
               "-log", "none"]
    if ranks > 1:
        command = [mpirun_executable(), "-np", str(ranks), *command]
    result = subprocess.run(command, cwd=directory, env=lammps_environment(),
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", result.stdout)
    seconds, done = float(loops[-1][0]), int(loops[-1][1])
    rss = [int(v) for v in re.findall(r"peak_rss_kib (\d+)", result.stderr)]
    return {"ms_per_step": 1000.0 * seconds / done, "peak_rss_mib": max(rss) / 1024,
            "atoms": 4 * shape[0] * shape[1] * shape[2], "ranks": ranks, "mode": mode,
            "memory": memory,
            "exchange": "layer-wise evaluation" in result.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/scaling"))
    parser.add_argument("--models", nargs="+", default=["mace-L1", "nequip"], choices=sorted(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[8])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--weak", type=int, default=0, help="cells per rank along x; 0: none")
    parser.add_argument("--parallel", nargs="+", default=["halo", "exchange"],
                        choices=["halo", "exchange"],
                        help="schemes to run on more than one rank (halo: as much memory "
                             "per rank as one rank needs for the whole system)")
    parser.add_argument("--memory", nargs="+", default=["normal"], choices=["normal", "low"],
                        help="pair_style mlff memory: low recomputes each layer in the backward "
                             "pass (one layer's intermediate results held at a time; on one "
                             "rank it takes the layer-wise evaluation)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    import mlff
    from mlff.calculators.lammps.deploy import deploy

    print("command:", " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, mlff {mlff.__version__}")
    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    rows = []
    for key in args.models:
        path = build_model(key, args.out / key / "model.mlff")
        deployed = args.out / key / "deployed"
        if not (deployed / "model.pt").exists():
            deploy(path, deployed, dtype="float32", structure=cu_atoms((2, 2, 2)))
        model = (deployed / "model.pt").resolve()
        shapes = [(n, n, n) for n in args.sizes]
        for shape in shapes:
            for memory in args.memory:
                for ranks in args.ranks:
                    # one rank: auto is the whole model at once, or with memory low the
                    # layer-wise evaluation (ghosts are periodic images)
                    for mode in (["auto"] if ranks == 1 else args.parallel):
                        tag = f"{key}-{shape[0]}x{shape[1]}x{shape[2]}-np{ranks}-{mode}-{memory}"
                        record = {"model": key, **run(args.out / key / tag, model, shape, ranks,
                                                      mode, args.steps, memory)}
                        record["load"] = os.getloadavg()[0]
                        rows.append(record)
                        with records.open("a") as handle:
                            handle.write(json.dumps(record) + "\n")
                        print(json.dumps(record), flush=True)
        if args.weak:
            for ranks in args.ranks:
                shape = (ranks * args.weak, args.weak, args.weak)
                mode = "exchange" if ranks > 1 else "halo"
                record = {"model": key, "weak": True,
                          **run(args.out / key / f"weak-np{ranks}", model, shape, ranks, mode,
                                args.steps)}
                record["load"] = os.getloadavg()[0]
                rows.append(record)
                with records.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)

    print("\n| model | atoms | ranks | ghosts | ms/step | speed-up vs 1 rank | parallel efficiency "
          "| peak RSS MiB per rank (vs 1 rank) | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ones = [r for r in rows if r["model"] == row["model"] and r["ranks"] == 1
                and r["atoms"] == row["atoms"] and not r.get("weak")]
        # the baseline: one rank with normal memory where it ran
        one = next((r for r in ones if r["memory"] == "normal"), ones[0] if ones else None)
        speedup = one["ms_per_step"] / row["ms_per_step"] if one and not row.get("weak") else None
        ghosts = ("weak scaling, " if row.get("weak") else "") + (
            "exchange" if row["exchange"] else ("halo" if row["ranks"] > 1 else "one cutoff")) + (
            ", memory low" if row["memory"] == "low" else "")
        print(f"| {row['model']} | {row['atoms']} | {row['ranks']} | {ghosts} | "
              f"{row['ms_per_step']:.1f} | {speedup:.2f} | {speedup / row['ranks']:.2f} | "
              if speedup else
              f"| {row['model']} | {row['atoms']} | {row['ranks']} | {ghosts} | "
              f"{row['ms_per_step']:.1f} | - | - | ", end="")
        ratio = f" ({row['peak_rss_mib'] / one['peak_rss_mib']:.2f})" if one and not row.get("weak") else ""
        print(f"{row['peak_rss_mib']:.0f}{ratio} | {row['load']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
