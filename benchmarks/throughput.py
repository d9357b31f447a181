"""Training throughput on ethanol: structures per second for 1 and 2 processes, and the
share of each epoch spent waiting for data (the loader's share).

    python benchmarks/throughput.py --epochs 3 --out bench-out/throughput

Trains examples/ethanol/painn.yaml (950 training structures) for a few epochs with
`mlff train --nproc P` for each P, and reads `throughput` from each run's log.jsonl
(epochs after the first, which warms up). With several processes the global batch is
the same, so each process computes on a share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch

import mlff

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ethanol"


def run(nproc: int, epochs: int, batch_size: int, workers: int, out: Path) -> dict[str, float]:
    if out.exists():
        shutil.rmtree(out)
    command = [
        sys.executable, "-m", "mlff", "train", str(EXAMPLES / "painn.yaml"), "--out", str(out),
        "--nproc", str(nproc), "--quiet",
        "--set", f"training.max_epochs={epochs}", "--set", "training.max_minutes=null",
        "--set", f"training.batch_size={batch_size}", "--set", f"training.num_workers={workers}",
        "--set", "data.test=null",
    ]
    if nproc == 1:
        command += ["--set", f"threads={os.cpu_count()}"]
    subprocess.run(command, check=True)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    later = records[1:] or records
    return {
        "structures_per_s": statistics.mean(r["throughput"]["structures_per_s"] for r in later),
        "loader_fraction": statistics.mean(r["throughput"]["loader_fraction"] for r in later),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="global batch (structures)")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes")
    parser.add_argument("--out", default="bench-out/throughput")
    args = parser.parse_args()
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"mlff {mlff.__version__}")
    print(f"{'processes':>9} {'structures/s':>13} {'loader share':>13}")
    for nproc in args.nproc:
        result = run(nproc, args.epochs, args.batch_size, args.workers, Path(args.out) / f"np{nproc}")
        print(f"{nproc:>9} {result['structures_per_s']:>13.1f} {100 * result['loader_fraction']:>12.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
