"""Inference speed and memory through the ASE calculator: mlff against mace-torch and nequip.

    python benchmarks/speed.py --out bench-out/speed                      # everything
    python benchmarks/speed.py --out bench-out/speed --architectures mace nequip \\
        --sizes 3 5 8 --dtypes float32 --peers mace nequip                # the peer comparison
    python benchmarks/speed.py --out bench-out/speed --architectures mace --sizes 30 \\
        --dtypes float32 --peers                                          # 108,000 atoms
    python benchmarks/speed.py --out bench-out/speed --leak-steps 10000 --architectures mace
    python benchmarks/speed.py --out bench-out/speed --architectures mace --mace-sizes L1-64 \
        L2-128 --sizes 3 5 8 --dtypes float32 --peers mace --no-ethanol   # MACE sizes people use

Every mlff architecture gets a model that knows H, C, O and Cu (random weights: only the
cost matters), MACE and NequIP at the peers' hyperparameters (../shared/peers: MACE 32x0e,
max_L 0, correlation 3, 2 interactions; NequIP 3 layers, l_max 1, 32 features; both
r_max 5 Å), the others at their defaults with a 5 Å cutoff. Structures: periodic cubic fcc
Cu supercells of n x n x n cells (4 n³ atoms: n = 3, 5, 8, 13, 20 give 108, 500, 2048,
8788, 32000), rattled by 0.02 Å, and an ethanol molecule.

One process per (code, model, dtype, structure), so that peak RSS is per configuration.
A "step" is one energy + forces call after a tiny random displacement of every atom (1e-3
Å), so that the calculator recomputes everything it would in MD; with the neighbour list
reused between calls (skin) as it would be in MD. The peers run ../shared/peers/
speed_ase.py, the same protocol, in their own virtual environments (setup.sh), with
models trained for one epoch on EMT Cu (as mace_speed.py / nequip_speed.py do); they are
trained here if missing. Runs of mlff and its peer alternate, so both see the same load.

Prints the command, the machine and Markdown tables; every record goes to
OUT/speed.jsonl. ``--leak-steps N`` instead runs N steps of velocity Verlet MD on 256 Cu
atoms and prints the RSS over time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARCHITECTURES = ["mace", "nequip", "allegro", "painn", "schnet", "deeppot"]
# the peers' hyperparameters (../shared/peers/mace_speed.py, nequip_cu_speed.yaml)
PEER_MATCHED = {
    "mace": {"num_channels": 32, "max_L": 0, "correlation": 3, "num_interactions": 2,
             "max_ell": 3, "num_radial": 8, "radial_mlp": [64, 64, 64]},
    "nequip": {"num_layers": 3, "l_max": 1, "num_features": 32, "parity": True,
               "num_radial": 8, "radial_mlp_width": 64, "radial_mlp_depth": 2},
}
# MACE at the sizes people use, beside mace-torch at the same hyperparameters:
# --mace-sizes L1-64 L2-128 adds "mace-L1-64" (64x0e+64x1o) and "mace-L2-128" models
MACE_SIZES = {"L0-32": (0, 32), "L1-64": (1, 64), "L1-128": (1, 128), "L2-64": (2, 64),
              "L2-128": (2, 128)}
SPECIES = [1, 6, 8, 29]
CUTOFF = 5.0
AVG_NEIGHBORS = 42.0  # fcc Cu, a = 3.61 Å, 5 Å: 12 + 6 + 24 neighbours
PEERS_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "peers"


def structure(name: str):
    """``cu:N`` (N x N x N cubic fcc Cu cells, rattled) or ``ethanol``."""
    from ase.build import bulk, molecule

    if name == "ethanol":
        atoms = molecule("CH3CH2OH")
    else:
        reps = int(name.split(":")[1])
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((reps, reps, reps))
    atoms.rattle(0.02, seed=1)
    return atoms


# ---------------------------------------------------------------- one measurement (child)
def measure(model_file: str, dtype: str, name: str, min_seconds: float, max_steps: int,
            md_steps: int) -> dict:
    """Time energy + forces calls of mlff's ASE calculator on one structure."""
    import torch

    from mlff.calculators.ase import MLFFCalculator

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    atoms = structure(name)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    calc = MLFFCalculator(model_file, dtype=dtype)
    load_s = time.perf_counter() - start
    atoms.calc = calc
    start = time.perf_counter()
    atoms.get_potential_energy()
    atoms.get_forces()
    first_s = time.perf_counter() - start
    times = []
    if md_steps:
        from ase import units
        from ase.md.verlet import VelocityVerlet

        dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
        for _ in range(md_steps):
            start = time.perf_counter()
            dynamics.run(1)
            times.append(time.perf_counter() - start)
    else:
        for _ in range(2):  # warm-up
            atoms.positions += 1e-3 * rng.standard_normal(atoms.positions.shape)
            atoms.get_potential_energy()
            atoms.get_forces()
        began = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - began < min_seconds
                                 and len(times) < max_steps):
            atoms.positions += 1e-3 * rng.standard_normal(atoms.positions.shape)
            start = time.perf_counter()
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces()
            times.append(time.perf_counter() - start)
    ms = 1e3 * float(np.median(times))
    return {
        "backend": "mlff", "model": Path(model_file).stem, "dtype": dtype, "structure": name,
        "n_atoms": len(atoms), "steps": len(times), "ms_per_step_median": round(ms, 2),
        "ms_per_step_min": round(1e3 * min(times), 2),
        "us_per_atom_step": round(1e3 * ms / len(atoms), 2),
        "first_call_s": round(first_s, 2), "load_s": round(load_s, 2),
        "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_model_MiB": round(rss_before, 1),
        "neighbor_list_rebuilds": calc.neighbor_list.rebuilds,
        "neighbor_list_calls": calc.neighbor_list.calls,
        "atoms_per_chunk": calc.chunk_size(calc.atoms_to_graph(atoms), bool(atoms.pbc.all())),
        "torch_threads": torch.get_num_threads(),
        "energy_eV": float(atoms.get_potential_energy()),
        "md": bool(md_steps),
    }


def leak_check(model_file: str, dtype: str, steps: int, every: int) -> list[dict]:
    """Velocity Verlet on 256 Cu atoms at 600 K; RSS (current, from /proc) every ``every`` steps."""
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from mlff.calculators.ase import MLFFCalculator

    atoms = structure("cu:4")
    atoms.calc = MLFFCalculator(model_file, dtype=dtype)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    rows = []
    start = time.perf_counter()
    for done in range(0, steps + 1, every):
        if done:
            dynamics.run(every)
        rows.append({"step": done, "rss_MiB": round(current_rss_mib(), 1),
                     "seconds": round(time.perf_counter() - start, 1),
                     "rebuilds": atoms.calc.neighbor_list.rebuilds})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def current_rss_mib() -> float:
    """Resident memory now (not the peak), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- models
def model_hyperparameters(key: str) -> tuple[str, dict]:
    """``mace-L1-64`` -> ("mace", MACE hyperparameters at max_L 1, 64 channels); an
    architecture name -> itself and its peer-matched hyperparameters."""
    architecture, _, size = key.partition("-")
    hyperparameters = dict(PEER_MATCHED.get(architecture, {}))
    if size:
        max_l, channels = MACE_SIZES[size]
        hyperparameters.update(max_L=max_l, num_channels=channels)
    return architecture, hyperparameters


def build_models(directory: Path, architectures: list[str]) -> dict[str, Path]:
    """One .mlff file per architecture or MACE size (float64 weights; the calculator casts)."""
    import torch

    from mlff.models import Potential, build_model, get_architecture, save_model

    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for key in architectures:
        path = directory / f"{key}.mlff"
        architecture, matched = model_hyperparameters(key)
        if not path.exists():
            torch.manual_seed(0)
            hyperparameters = {"architecture": architecture, "cutoff": CUTOFF, **matched}
            if "avg_num_neighbors" in get_architecture(architecture).Config.model_fields:
                hyperparameters["avg_num_neighbors"] = AVG_NEIGHBORS
            hyperparameters = get_architecture(architecture).Config.model_validate(
                hyperparameters).model_dump()
            model = build_model(hyperparameters, len(SPECIES))
            save_model(Potential(model, hyperparameters, SPECIES, [0.0] * len(SPECIES)), path)
        files[key] = path
    return files


def peer_python(peers: Path, peer: str) -> Path:
    return peers / f"venv-{peer}" / "bin" / "python"


def peer_models(peers: Path, peer: str, dtypes: list[str], size: str = "L0-32") -> dict[str, Path]:
    """The peer's Cu model per dtype, trained for one epoch on EMT Cu if missing (MACE at
    ``size``, one of MACE_SIZES)."""
    python = peer_python(peers, peer)
    work = peers / f"speed_{peer}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "cu_emt.xyz"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    if not data.exists():
        subprocess.run([str(python), str(PEERS_DIR / "gen_cu_emt.py"), str(data), "20"],
                       check=True, env=env)
    if peer == "mace":
        max_l, channels = MACE_SIZES[size]
        name = "mace_cu32x0e" if size == "L0-32" else f"mace_cu_{size}"
        model = work / f"{name}.model"
        if not model.exists():
            arguments = {"name": name, "work_dir": work, "train_file": data,
                         "valid_fraction": 0.1, "energy_key": "REF_energy",
                         "forces_key": "REF_forces", "E0s": "average", "model": "MACE",
                         "num_channels": channels, "max_L": max_l, "correlation": 3,
                         "num_interactions": 2, "r_max": CUTOFF, "batch_size": 5,
                         "max_num_epochs": 1, "default_dtype": "float64", "device": "cpu",
                         "seed": 123}
            command = [str(python.parent / "mace_run_train")]
            command += [f"--{key}={value}" for key, value in arguments.items()]
            subprocess.run(command, check=True, cwd=work, env=env, capture_output=True)
        return dict.fromkeys(dtypes, model)  # MACECalculator casts to default_dtype
    models = {}
    for dtype in dtypes:
        run = work / f"run_{dtype}"
        checkpoint = run / "last.ckpt"
        if not checkpoint.exists():
            subprocess.run([str(python.parent / "nequip-train"), "-cp", str(PEERS_DIR),
                            "-cn", "nequip_cu_speed.yaml", f"model_dtype={dtype}",
                            f"hydra.run.dir={run}", f"data_file={data}"],
                           check=True, cwd=work, env=env, capture_output=True)
        models[dtype] = checkpoint
    return models


# ---------------------------------------------------------------- runs
def run_child(command: list[str], timeout: float) -> dict:
    """Run one measurement process; its last stdout line is a JSON record."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())))
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not lines[-1].startswith("{"):
        return {"error": f"exit {result.returncode}: {result.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def machine() -> str:
    from importlib.metadata import version

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
            f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; "
            f"Python {platform.python_version()}, torch {version('torch')}")


def table(records: list[dict]) -> str:
    """Markdown: one row per mlff run, with the peer's figures beside it when measured."""
    def peer_key(record: dict) -> tuple:
        """(code, MACE size or None, dtype, atoms) of an mlff run or of the peer run beside it."""
        name = Path(str(record["model"])).name
        if record["backend"] == "mlff":
            code, _, size = name.partition("-")
            return code, (size or "L0-32") if code == "mace" else None, record["dtype"], \
                record["n_atoms"]
        size = None
        if record["backend"] == "mace":
            size = "L0-32" if name.startswith("mace_cu32x0e") else \
                name.removeprefix("mace_cu_").removesuffix(".model")
        return record["backend"], size, record["dtype"], record["n_atoms"]

    peers = {peer_key(r): r for r in records
             if r.get("backend") in ("mace", "nequip") and "error" not in r}
    lines = ["| model | dtype | atoms | ms/step | µs/atom/step | first call s | peak RSS MiB "
             "| peer µs/atom/step | ratio | peer peak RSS MiB | NL rebuilds/calls |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        if r.get("backend") != "mlff":
            continue
        if "error" in r:
            lines.append(f"| {r['model']} | {r['dtype']} | {r['structure']} | {r['error'][:80]} "
                         "| | | | | | | |")
            continue
        peer = peers.get(peer_key(r))
        peer_cells = "| | |"
        if peer is not None:
            ratio = r["us_per_atom_step"] / peer["us_per_atom_step"]
            peer_cells = f"{peer['us_per_atom_step']:.0f} | {ratio:.2f} | {peer['peak_rss_MiB']:.0f} |"
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['n_atoms']} | {r['ms_per_step_median']:.1f} "
            f"| {r['us_per_atom_step']:.1f} | {r['first_call_s']:.2f} | {r['peak_rss_MiB']:.0f} "
            f"| {peer_cells} {r['neighbor_list_rebuilds']}/{r['neighbor_list_calls']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/speed"))
    parser.add_argument("--architectures", nargs="+", default=ARCHITECTURES,
                        help=f"any of {' '.join(ARCHITECTURES)}")
    parser.add_argument("--sizes", nargs="+", type=int, default=[3, 5, 8, 13, 20],
                        help="n of the n x n x n fcc Cu supercells (4 n^3 atoms)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                        choices=["float32", "float64"])
    parser.add_argument("--no-ethanol", action="store_true", help="skip the ethanol molecule")
    parser.add_argument("--mace-sizes", nargs="+", default=["L0-32"], choices=list(MACE_SIZES),
                        help="MACE max_L and channels (L0-32 is the peers' ethanol recipe)")
    parser.add_argument("--peers", nargs="*", default=["mace", "nequip"], choices=["mace", "nequip"],
                        help="peers to run beside mlff (nothing: none)")
    parser.add_argument("--peer-max-atoms", type=int, default=2048,
                        help="largest structure the peers run (mace-torch needs ~0.7 MiB/atom)")
    parser.add_argument("--peers-dir", type=Path, default=Path(os.environ.get("PEERS", "/tmp/peers")))
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--md-steps", type=int, default=0,
                        help="time this many velocity Verlet steps instead of displaced calls")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    parser.add_argument("--leak-steps", type=int, default=0)
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "DTYPE", "STRUCTURE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--build-models", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for key in args.architectures:
        architecture, _, size = key.partition("-")
        if architecture not in ARCHITECTURES or (size and size not in MACE_SIZES):
            parser.error(f"unknown architecture {key!r}")

    if args.build_models:
        build_models(args.out / "models", args.architectures)
        return

    if args.child:
        model, dtype, name = args.child
        print(json.dumps(measure(model, dtype, name, args.min_seconds, args.max_steps,
                                 args.md_steps)))
        return

    print(f"$ python {' '.join(sys.argv)}")
    print(f"# {machine()}")
    # this process stays small (no torch): a child's peak RSS starts from its parent's
    # resident memory at the fork, which the kernel carries across exec
    script = [sys.executable, str(Path(__file__).resolve())]
    keys = [k for a in args.architectures
            for k in ([a] if a != "mace" else
                      ["mace" if s == "L0-32" else f"mace-{s}" for s in args.mace_sizes])]
    subprocess.run([*script, "--build-models", "--out", str(args.out), "--architectures",
                    *keys], check=True)
    models = {k: args.out / "models" / f"{k}.mlff" for k in keys}
    if args.leak_steps:
        for architecture in args.architectures:
            print(f"# leak check: {architecture}, {args.dtypes[0]}, 256 Cu atoms, "
                  f"{args.leak_steps} velocity Verlet steps")
            rows = leak_check(str(models[architecture]), args.dtypes[0], args.leak_steps,
                              max(args.leak_steps // 10, 1))  # torch is imported only here
            growth = rows[-1]["rss_MiB"] - rows[1]["rss_MiB"]
            print(f"RSS after step {rows[1]['step']}: {rows[1]['rss_MiB']} MiB, after step "
                  f"{rows[-1]['step']}: {rows[-1]['rss_MiB']} MiB (growth {growth:+.1f} MiB)")
        return

    peer_files = {}
    for key in keys:
        architecture, _, size = key.partition("-")
        if architecture in args.peers:
            peer_files[key] = peer_models(args.peers_dir, architecture, args.dtypes,
                                          size or "L0-32")
    names = [f"cu:{n}" for n in args.sizes] + ([] if args.no_ethanol else ["ethanol"])
    records = []
    results = args.out / "speed.jsonl"
    protocol = ["--min-seconds", str(args.min_seconds), "--max-steps", str(args.max_steps),
                "--md-steps", str(args.md_steps)]
    with results.open("a") as sink:
        for dtype in args.dtypes:
            for name in names:
                atoms = len(structure(name))
                for architecture in keys:
                    runs = [("mlff", [*script, "--child", str(models[architecture]), dtype, name,
                                      *protocol])]
                    if architecture in peer_files and name != "ethanol" and atoms <= args.peer_max_atoms:
                        reps = name.split(":")[1]
                        peer = architecture.partition("-")[0]
                        runs.append((architecture, [
                            str(peer_python(args.peers_dir, peer)),
                            str(PEERS_DIR / "speed_ase.py"), peer,
                            str(peer_files[architecture][dtype]), dtype, reps,
                            str(args.min_seconds), str(args.max_steps)]))
                    for backend, command in runs:
                        record = run_child(command, args.timeout)
                        record.setdefault("backend", backend)
                        record.setdefault("model", architecture)
                        record.setdefault("dtype", dtype)
                        record.setdefault("structure", name)
                        record["when"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                        records.append(record)
                        sink.write(json.dumps(record) + "\n")
                        sink.flush()
                        print(json.dumps(record), flush=True)
    print()
    print(table(records))
    print(f"\nrecords appended to {results}")


if __name__ == "__main__":
    main()
