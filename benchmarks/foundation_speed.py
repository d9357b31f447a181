"""Imported SevenNet-0 through mlff against sevenn's own calculator: speed and memory.

    python benchmarks/foundation_speed.py --out bench-out/foundation
    python benchmarks/foundation_speed.py --out bench-out/foundation --structures cu:13  # 8788

Both run SevenNet-0 (11Jul2024) in float32 on the CPU through their ASE calculators:
mlff's ``MLFFCalculator`` on the model written by ``mlff import sevennet-0 --dtype
float32``, and sevenn's ``SevenNetCalculator("7net-0")`` (its e3nn path: no tensor-product
accelerator exists on the CPU). Structures: ``cu:N`` is N x N x N cubic fcc Cu cells (4 N³
atoms: 3, 5, 8, 13 give 108, 500, 2048, 8788), ``srtio3:N`` N x N x N cubic perovskite
SrTiO3 cells (5 N³ atoms), both rattled by 0.02 Å.

One process per (code, structure), so that peak RSS is per configuration, and the two
codes alternate so that both see the same machine load. A "step" is one energy + forces
call after a tiny random displacement of every atom (1e-3 Å), as in speed.py; after one
warm-up call and ``--untimed`` untimed steps (2), steps are timed for at least
``--min-seconds`` (at least ``--min-steps``). Prints the command, the machine and a
Markdown table; every record goes to OUT/foundation_speed.jsonl.
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

CODES = ("mlff", "sevenn")


def structure(name: str):
    """``cu:N`` or ``srtio3:N`` (see the module docstring)."""
    from ase.build import bulk
    from ase.spacegroup import crystal

    kind, reps = name.split(":")
    reps = int(reps)
    if kind == "cu":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    elif kind == "srtio3":
        atoms = crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)],
                        spacegroup=221, cellpar=[3.905, 3.905, 3.905, 90, 90, 90])
    else:
        raise SystemExit(f"unknown structure {name!r}")
    atoms = atoms.repeat((reps, reps, reps))
    atoms.rattle(0.02, seed=1)
    return atoms


def measure(code: str, model: str, name: str, min_seconds: float, min_steps: int,
            untimed: int = 2) -> dict:
    """Time energy + forces calls of one code's calculator on one structure (child process)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    atoms = structure(name)
    start = time.perf_counter()
    if code == "mlff":
        from mlff import MLFFCalculator

        calculator = MLFFCalculator(model)
    else:
        from sevenn.calculator import SevenNetCalculator

        calculator = SevenNetCalculator(model, device="cpu")
    load_seconds = time.perf_counter() - start
    atoms.calc = calculator
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    atoms.get_potential_energy()
    atoms.get_forces()
    first_seconds = time.perf_counter() - start
    for _ in range(untimed):
        atoms.positions += 1e-3 * rng.standard_normal(atoms.positions.shape)
        atoms.get_potential_energy()
        atoms.get_forces()
    times = []
    start = time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < min_seconds:
        atoms.positions += 1e-3 * rng.standard_normal(atoms.positions.shape)
        t0 = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {
        "code": code, "structure": name, "n_atoms": len(atoms), "dtype": "float32",
        "steps": len(times), "ms_per_step": round(1e3 * median, 1),
        "us_per_atom_step": round(1e6 * median / len(atoms), 1),
        "load_s": round(load_seconds, 2), "first_call_s": round(first_seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mib": round(rss_before, 1),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{cpu}, {os.cpu_count()} cores, OMP_NUM_THREADS={threads}"


def table(records: list[dict]) -> str:
    rows = ["| structure | atoms | mlff µs/atom/step | sevenn µs/atom/step | mlff / sevenn | "
            "mlff peak RSS (MiB) | sevenn peak RSS (MiB) |", "|---|---|---|---|---|---|---|"]
    by = {(r["code"], r["structure"]): r for r in records if "error" not in r}
    for name in dict.fromkeys(r["structure"] for r in records):
        ours, theirs = by.get(("mlff", name)), by.get(("sevenn", name))
        if ours is None or theirs is None:
            continue
        rows.append(f"| {name} | {ours['n_atoms']} | {ours['us_per_atom_step']} | "
                    f"{theirs['us_per_atom_step']} | "
                    f"{ours['us_per_atom_step'] / theirs['us_per_atom_step']:.2f} | "
                    f"{ours['peak_rss_mib']} | {theirs['peak_rss_mib']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/foundation"))
    parser.add_argument("--structures", nargs="+",
                        default=["cu:3", "srtio3:3", "cu:5", "srtio3:5", "cu:8", "srtio3:8"])
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--untimed", type=int, default=2, help="untimed steps after the first call")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per child process, s")
    parser.add_argument("--child", nargs=3, metavar=("CODE", "MODEL", "STRUCTURE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        code, model, name = args.child
        print(json.dumps(measure(code, model, name, args.min_seconds, args.min_steps,
                                 args.untimed)))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print("machine:", machine())
    imported = args.out / "sevennet-0-float32.mlff"
    if not imported.exists():
        from mlff.imports import import_model

        import_model("sevennet-0", out=imported, dtype="float32")
    from mlff.imports.sevennet import pretrained_path

    models = {"mlff": str(imported), "sevenn": str(pretrained_path("sevennet-0"))}
    records = []
    log = args.out / "foundation_speed.jsonl"
    for name in args.structures:
        for code in CODES:
            command = [sys.executable, __file__, "--min-seconds", str(args.min_seconds),
                       "--min-steps", str(args.min_steps), "--untimed", str(args.untimed),
                       "--child", code, models[code], name]
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=args.timeout, check=True)
                record = json.loads(done.stdout.strip().splitlines()[-1])
            except (subprocess.SubprocessError, json.JSONDecodeError, IndexError) as exc:
                record = {"code": code, "structure": name, "error": str(exc)[-500:]}
            records.append(record)
            with log.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    print()
    print(table(records))


if __name__ == "__main__":
    main()
