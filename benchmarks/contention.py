"""Throughput with 1 and 2 threads, idle and beside a one-core busy process.

    python benchmarks/contention.py --out bench-out/contention
    python benchmarks/contention.py --out bench-out/contention --seconds 30 --only train

Three workloads, each in a fresh process (so the OpenMP runtime starts with the settings
under test):

- ``train``: ``mlff train examples/ethanol/painn.yaml`` for ``--seconds`` of wall clock;
  the median of the per-epoch ``structures_per_s`` in its log.
- ``evaluate``: energy + forces calls of the ASE calculator on a 256-atom Cu cell
  (PaiNN, random weights: only the cost matters), calls per second.
- ``md``: velocity Verlet steps of a MACE model on the same cell, steps per second.

Thread settings: mlff's default (nothing set: the free cores, re-checked as the load
changes), ``OMP_NUM_THREADS=1``, ``OMP_NUM_THREADS=2``, and torch's own default
(``OMP_WAIT_POLICY=ACTIVE``, 2 threads: what mlff did before choosing). Each runs
idle and beside ``python -c 'while True: pass'`` pinned to one core. Prints the command,
the machine and a Markdown table; records go to OUT/contention.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "mlff default": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads": {"OMP_NUM_THREADS": "2"},
    "torch default (2, active)": {"MLFF_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
}
WORKLOADS = ("train", "evaluate", "md")


def child_env(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MLFF_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(settings)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def run_train(out: Path, settings: dict[str, str], seconds: float) -> float:
    """Median training throughput (structures/s) of ``mlff train`` in ``seconds``."""
    run_dir = out / f"train-{time.time_ns()}"
    command = [sys.executable, "-m", "mlff", "train", str(ROOT / "examples/ethanol/painn.yaml"),
               "--out", str(run_dir), "--quiet",
               "--set", f"training.max_minutes={seconds / 60}",
               "--set", "data.test=null"]
    subprocess.run(command, env=child_env(settings), check=True, capture_output=True)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    rates = [r["throughput"]["structures_per_s"] for r in records[1:]] or \
        [r["throughput"]["structures_per_s"] for r in records]
    return statistics.median(rates)


CALL_SCRIPT = """
import sys, time, numpy as np, torch
sys.path.insert(0, {bench!r})
from ase.build import bulk
from tests import helpers
from mlff.calculators.ase import MLFFCalculator
from ase.md.verlet import VelocityVerlet
from ase import units
workload, seconds = {workload!r}, {seconds!r}
architecture = "painn" if workload == "evaluate" else "mace"
overrides = {{"num_features": 64, "num_layers": 3}} if architecture == "painn" else \\
    {{"num_channels": 32, "max_L": 1, "num_interactions": 2}}
potential = helpers.build_potential(architecture, cutoff=5.0, dtype=torch.float32, **overrides)
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
atoms.rattle(0.02, seed=1)
atoms.calc = MLFFCalculator(potential)
rng = np.random.default_rng(0)
dyn = VelocityVerlet(atoms, 1.0 * units.fs)
count, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    if workload == "evaluate":
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        atoms.get_forces()
    else:
        dyn.run(1)
    count += 1
print(count / (time.perf_counter() - start))
"""


def run_calls(workload: str, settings: dict[str, str], seconds: float) -> float:
    """Calls (``evaluate``) or MD steps (``md``) per second in a fresh process."""
    script = CALL_SCRIPT.format(bench=str(ROOT), workload=workload, seconds=seconds)
    env = child_env(settings)
    env["PYTHONPATH"] = f"{ROOT / 'src'}:{ROOT}"
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def busy_process() -> subprocess.Popen:
    """A one-core spin loop, pinned to the last core."""
    core = max(os.sched_getaffinity(0))
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=45.0, help="per training run")
    parser.add_argument("--call-seconds", type=float, default=15.0, help="per evaluate/md run")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("command: python " + " ".join(sys.argv))
    print(f"machine: {platform.node()}, {len(os.sched_getaffinity(0))} cores, "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    results: dict[tuple[str, str, str], float] = {}
    records = args.out / "contention.jsonl"
    for workload in args.only:
        for name in args.settings:
            for load in ("idle", "busy"):
                spinner = busy_process() if load == "busy" else None
                try:
                    time.sleep(1.0 if spinner else 0.0)
                    if workload == "train":
                        value = run_train(args.out, SETTINGS[name], args.seconds)
                    else:
                        value = run_calls(workload, SETTINGS[name], args.call_seconds)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                results[workload, name, load] = value
                record = {"workload": workload, "setting": name, "load": load, "rate": value}
                with open(records, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)
    units = {"train": "structures/s", "evaluate": "calls/s", "md": "steps/s"}
    for workload in args.only:
        print(f"\n{workload} ({units[workload]})\n")
        print("| threads | idle | beside a busy core | busy / idle |")
        print("| --- | --- | --- | --- |")
        for name in args.settings:
            idle, busy = results[workload, name, "idle"], results[workload, name, "busy"]
            print(f"| {name} | {idle:.3g} | {busy:.3g} | {busy / idle:.2f} |")


if __name__ == "__main__":
    main()
