"""mlff and its peers (mace-torch, nequip) trained side by side on ethanol, same budget.

    python benchmarks/peers_ethanol.py --minutes 20 --runs mace-torch,mlff-mace,nequip,mlff-nequip

Each run trains on the standard split (950 training / 50 validation frames of train.xyz)
within the same wall-clock budget and with comparable hyperparameters, one after the
other in this process's machine (so they share its load), then is evaluated on test_MD
through its own ASE calculator in float64:

- ``mlff-<arch>``: ``benchmarks/ethanol.py --model <arch>``, i.e. examples/ethanol/<arch>.yaml
  (mace: 32 channels, max_L 0, correlation 3, 2 layers, 5 Å; nequip: 3 layers, l_max 1,
  32 features, 5 Å; also allegro, deeppot, painn, schnet).
- ``mace-torch``: ../shared/peers/mace_ethanol.sh (the same MACE hyperparameters). It
  stops on an epoch count, not a clock: the epochs are set to 75 × minutes / 20, the count
  that takes 20 minutes on this kind of machine; its measured wall time is in the table.
- ``nequip``: ../shared/peers/nequip_ethanol.sh with ``budget`` = minutes (a wall clock).

The peers are installed on first use by ../shared/peers/setup.sh in their own virtual
environments under $PEERS (default /tmp/peers). Prints one table (epochs, force MAE and
RMSE in meV/Å, energy MAE in meV/atom, wall time) and writes OUT/results.json.
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

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPTS = REPO.parent / "shared" / "peers"
PEERS = Path(os.environ.get("PEERS", "/tmp/peers"))
MACE_EPOCHS_PER_20_MINUTES = 75


def _run(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``command`` with its output in ``log``; the wall time in seconds."""
    print(f"$ {' '.join(command)}   (log: {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError(f"{command[0]} failed with exit code {code}; see {log}")
    return time.perf_counter() - start


def _parse_eval(path: Path) -> dict[str, float]:
    """The metrics printed by ../shared/peers/eval_ase.py."""
    values = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            try:
                values[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return {
        "forces_mae_meV_per_A": values["F_MAE_meV_per_A"],
        "forces_rmse_meV_per_A": values["F_RMSE_meV_per_A"],
        "energy_mae_meV_per_atom": values["E_MAE_meV_per_atom"],
    }


def run_mlff(architecture: str, minutes: float, threads: int, out: Path, env: dict) -> dict:
    work = out / f"mlff-{architecture}"
    command = [sys.executable, str(REPO / "benchmarks" / "ethanol.py"), "--model", architecture,
               "--minutes", str(minutes), "--threads", str(threads), "--out", str(work)]
    wall = _run(command, env, out / f"mlff-{architecture}.log")
    result = json.loads((work / "benchmark.json").read_text())
    return {"epochs": result["epochs"], "train_wall_s": result["train_wall_s"], "total_wall_s": wall,
            **{k: result[k] for k in ("forces_mae_meV_per_A", "forces_rmse_meV_per_A",
                                      "energy_mae_meV_per_atom")}}


def run_mace_torch(minutes: float, threads: int, out: Path, env: dict) -> dict:
    work = out / "mace-torch"
    epochs = max(5, round(MACE_EPOCHS_PER_20_MINUTES * minutes / 20))
    env = {**env, "WORK": str(work), "EPOCHS": str(epochs), "VENV": str(PEERS / "venv-mace"),
           "DATA": str(PEERS / "data")}
    wall = _run(["bash", str(PEER_SCRIPTS / "mace_ethanol.sh")], env, out / "mace-torch.log")
    log = (work / "train.out").read_text() + "\n".join(
        p.read_text() for p in work.glob("logs/*.log"))
    done = [int(m) for m in re.findall(r"Epoch (\d+)", log)]
    return {"epochs": (max(done) + 1) if done else epochs, "train_wall_s": None,
            "total_wall_s": wall, **_parse_eval(work / "eval_test.txt")}


def run_nequip(minutes: float, threads: int, out: Path, env: dict) -> dict:
    work = out / "nequip"
    seconds = int(round(minutes * 60))
    budget = f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"
    env = {**env, "WORK": str(work), "VENV": str(PEERS / "venv-nequip"), "DATA": str(PEERS / "data")}
    wall = _run(["bash", str(PEER_SCRIPTS / "nequip_ethanol.sh"), f"budget={budget}"], env,
                out / "nequip.log")
    epochs = None
    metrics = sorted((work / "run").glob("csv/*/metrics.csv"))
    if metrics:
        lines = metrics[-1].read_text().splitlines()
        header = lines[0].split(",")
        if "epoch" in header:
            column = header.index("epoch")
            values = [int(float(r.split(",")[column])) for r in lines[1:] if r.split(",")[column]]
            epochs = max(values) + 1 if values else None
    return {"epochs": epochs, "train_wall_s": None, "total_wall_s": wall,
            **_parse_eval(work / "eval_test.txt")}


def ensure_peers(which: list[str], env: dict) -> None:
    missing = [w for w in which if not (PEERS / f"venv-{w}" / "bin" / "python").exists()
               or not (PEERS / "data" / "eth_train950.xyz").exists()]
    if missing:
        subprocess.check_call(["bash", str(PEER_SCRIPTS / "setup.sh"), *missing],
                              env={**env, "PEERS": str(PEERS)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget of every run")
    parser.add_argument("--runs", default="mace-torch,mlff-mace,nequip,mlff-nequip",
                        help="comma-separated: mace-torch, nequip, mlff-<architecture>")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads per run")
    parser.add_argument("--out", default="bench-out/peers", help="output folder")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    ensure_peers([p for p in ("mace", "nequip") if (f"{p}-torch" if p == "mace" else p) in runs], env)

    print(f"# command: {' '.join(sys.argv)}")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, {args.threads} threads per run, "
          f"{args.minutes} min per run, started {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    results: dict[str, dict] = {}
    for name in runs:
        if name == "mace-torch":
            results[name] = run_mace_torch(args.minutes, args.threads, out, env)
        elif name == "nequip":
            results[name] = run_nequip(args.minutes, args.threads, out, env)
        elif name.startswith("mlff-"):
            results[name] = run_mlff(name[5:], args.minutes, args.threads, out, env)
        else:
            parser.error(f"unknown run {name!r}")
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"{name}: {results[name]}", flush=True)

    print()
    print(f"| run | epochs | force MAE (meV/Å) | force RMSE (meV/Å) | energy MAE (meV/atom) | wall (min) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['epochs']} | {r['forces_mae_meV_per_A']:.2f} | "
              f"{r['forces_rmse_meV_per_A']:.2f} | {r['energy_mae_meV_per_atom']:.3f} | "
              f"{r['total_wall_s'] / 60:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
