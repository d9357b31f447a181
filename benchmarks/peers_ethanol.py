"""mlff and its peers (mace-torch, nequip) trained side by side on ethanol, same budget.

    python benchmarks/peers_ethanol.py --minutes 20 --runs mace-torch,mlff-mace,nequip,mlff-nequip

Each run trains on the standard split (950 training / 50 validation frames of train.xyz)
within the same wall-clock budget and with comparable hyperparameters, then is evaluated
on test_MD through its own ASE calculator in float64. Runs go one after the other with
``--threads`` each, or, with ``--jobs 2``, two at a time in the order given (a peer beside
its mlff counterpart, so both see the same machine load), each with ``--threads``:

- ``mlff-<arch>``: ``benchmarks/ethanol.py --model <arch>``, i.e. examples/ethanol/<arch>.yaml
  (mace: 32 channels, max_L 0, correlation 3, 2 layers, 5 Å; nequip: 3 layers, l_max 1,
  32 features, 5 Å; also allegro, deeppot, painn, schnet).
- ``mace-torch``: ../shared/peers/mace_ethanol.sh (the same MACE hyperparameters). It
  stops on an epoch count, not a clock: the epochs are 75 × minutes / 20 (the count that
  takes 20 minutes with 2 threads on a quiet machine of this kind) or, with
  ``--calibrate-mace``, the budget over its time per epoch measured first in a 4-epoch run
  (stage two starts at 4/5 of the epochs either way); its training wall time is in the table.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPTS = REPO.parent / "shared" / "peers"
PEERS = Path(os.environ.get("PEERS", "/tmp/peers"))
MACE_EPOCHS_PER_20_MINUTES = 75
REUSE = False  # set by --reuse
CALIBRATE_MACE = False  # set by --calibrate-mace


def _timed_wall_seconds(train_err: Path) -> float | None:
    """The training's wall time from the ``/usr/bin/time -v`` report the peer scripts write."""
    match = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
                      train_err.read_text() if train_err.exists() else "")
    if not match:
        return None
    seconds = 0.0
    for part in match.group(1).split(":"):
        seconds = 60 * seconds + float(part)
    return seconds


def _run(command: list[str], env: dict[str, str], log: Path, done: Path | None = None) -> float:
    """Run ``command`` with its output in ``log``; the wall time in seconds.

    With ``done`` (a file the run leaves at its end) present and --reuse given, the run
    is not repeated (wall time then NaN; the training time is read from the run's files).
    """
    if REUSE and done is not None and done.exists():
        print(f"reusing {done}", flush=True)
        return float("nan")
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
    wall = _run(command, env, out / f"mlff-{architecture}.log", work / "benchmark.json")
    result = json.loads((work / "benchmark.json").read_text())
    return {"epochs": result["epochs"], "train_wall_s": result["train_wall_s"], "total_wall_s": wall,
            **{k: result[k] for k in ("forces_mae_meV_per_A", "forces_rmse_meV_per_A",
                                      "energy_mae_meV_per_atom")}}


def _mace_seconds_per_epoch(work: Path) -> float | None:
    """Mean time between mace-torch's per-epoch log lines (its logs/*.log), seconds."""
    stamps = []
    for log in work.glob("logs/*.log"):
        for line in log.read_text().splitlines():
            match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: Epoch \d+:", line)
            if match:
                stamps.append(time.mktime(time.strptime(match.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
                              + float("0" + match.group(1)[19:]))
    stamps = sorted(set(stamps))  # the same line can be in several of its log files
    if len(stamps) < 2:
        return None
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def mace_torch_epochs(minutes: float, out: Path, env: dict) -> int:
    """Epochs of mace-torch that fit in ``minutes`` on this machine now.

    mace-torch stops on an epoch count, not a clock, so it first trains 4 epochs with the
    same threads (its own calibration run, in OUT/mace-torch-calibration) and the epoch
    count is the budget over the measured time per epoch. Without --calibrate-mace the
    count is 75 x minutes / 20, which fills 20 minutes with 2 threads on a quiet 2-core
    machine of this kind (../shared/peers/README.md).
    """
    if not CALIBRATE_MACE:
        return max(5, round(MACE_EPOCHS_PER_20_MINUTES * minutes / 20))
    work = out / "mace-torch-calibration"
    calibration_env = {**env, "WORK": str(work), "EPOCHS": "4", "VENV": str(PEERS / "venv-mace"),
                       "DATA": str(PEERS / "data")}
    _run(["bash", str(PEER_SCRIPTS / "mace_ethanol.sh")], calibration_env,
         out / "mace-torch-calibration.log", work / "eval_test.txt")
    per_epoch = _mace_seconds_per_epoch(work)
    if per_epoch is None:
        raise RuntimeError(f"no epoch times in {work}/logs; see {out / 'mace-torch-calibration.log'}")
    epochs = max(5, int(minutes * 60 // per_epoch))
    print(f"mace-torch: {per_epoch:.1f} s per epoch here: {epochs} epochs in {minutes} min", flush=True)
    return epochs


def run_mace_torch(minutes: float, out: Path, env: dict) -> dict:
    work = out / "mace-torch"
    epochs = mace_torch_epochs(minutes, out, env)
    env = {**env, "WORK": str(work), "EPOCHS": str(epochs), "VENV": str(PEERS / "venv-mace"),
           "DATA": str(PEERS / "data")}
    wall = _run(["bash", str(PEER_SCRIPTS / "mace_ethanol.sh")], env, out / "mace-torch.log",
                work / "eval_test.txt")
    log = (work / "train.out").read_text() + "\n".join(
        p.read_text() for p in work.glob("logs/*.log"))
    done = [int(m) for m in re.findall(r"Epoch (\d+)", log)]
    return {"epochs": (max(done) + 1) if done else epochs,
            "train_wall_s": _timed_wall_seconds(work / "train.err"),
            "total_wall_s": wall, **_parse_eval(work / "eval_test.txt")}


def run_nequip(minutes: float, out: Path, env: dict) -> dict:
    work = out / "nequip"
    seconds = int(round(minutes * 60))
    budget = f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"
    env = {**env, "WORK": str(work), "VENV": str(PEERS / "venv-nequip"), "DATA": str(PEERS / "data")}
    wall = _run(["bash", str(PEER_SCRIPTS / "nequip_ethanol.sh"), f"budget={budget}"], env,
                out / "nequip.log", work / "eval_test.txt")
    epochs = None
    metrics = sorted((work / "run").glob("csv/*/metrics.csv"))
    if metrics:
        lines = metrics[-1].read_text().splitlines()
        header = lines[0].split(",")
        if "epoch" in header:
            column = header.index("epoch")
            values = [int(float(r.split(",")[column])) for r in lines[1:] if r.split(",")[column]]
            epochs = max(values) + 1 if values else None
    return {"epochs": epochs, "train_wall_s": _timed_wall_seconds(work / "train.err"),
            "total_wall_s": wall, **_parse_eval(work / "eval_test.txt")}


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
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, in the order given")
    parser.add_argument("--out", default="bench-out/peers", help="output folder")
    parser.add_argument("--reuse", action="store_true",
                        help="take the results of runs already finished in OUT instead of rerunning them")
    parser.add_argument("--calibrate-mace", action="store_true",
                        help="set mace-torch's epochs from its measured time per epoch (see mace_torch_epochs)")
    args = parser.parse_args()
    global REUSE, CALIBRATE_MACE
    REUSE, CALIBRATE_MACE = args.reuse, args.calibrate_mace
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    ensure_peers([p for p in ("mace", "nequip") if (f"{p}-torch" if p == "mace" else p) in runs], env)

    print(f"# command: {' '.join(sys.argv)}")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, {args.threads} threads per run, "
          f"{args.jobs} run(s) at a time, {args.minutes} min per run, started {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    for name in runs:
        if name not in ("mace-torch", "nequip") and not name.startswith("mlff-"):
            parser.error(f"unknown run {name!r}")

    def run(name: str) -> dict:
        if name == "mace-torch":
            return run_mace_torch(args.minutes, out, env)  # threads: OMP_NUM_THREADS in env
        if name == "nequip":
            return run_nequip(args.minutes, out, env)
        return run_mlff(name[5:], args.minutes, args.threads, out, env)

    results: dict[str, dict] = {}
    # a queue: a run starts as soon as one of the ``jobs`` slots is free
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run, name) for name in runs]
        for name, future in zip(runs, futures):
            results[name] = future.result()
            (out / "results.json").write_text(json.dumps(results, indent=2))
            print(f"{name}: {results[name]}", flush=True)

    print()
    print("| run | epochs | force MAE (meV/Å) | force RMSE (meV/Å) | energy MAE (meV/atom) "
          "| training wall (min) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        train = r["train_wall_s"]
        print(f"| {name} | {r['epochs']} | {r['forces_mae_meV_per_A']:.2f} | "
              f"{r['forces_rmse_meV_per_A']:.2f} | {r['energy_mae_meV_per_atom']:.3f} | "
              f"{'?' if train is None else f'{train / 60:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
