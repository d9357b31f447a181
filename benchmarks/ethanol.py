"""Train mlff on the standard ethanol split within a wall-clock budget and report test errors.

    python benchmarks/ethanol.py --model painn --minutes 20 --out bench-out/painn

Trains with examples/ethanol/<model>.yaml (950/50 split of train.xyz, seed 0), leaves
OUT/model.mlff, then evaluates test_MD.xyz through MLFFCalculator (structure by structure,
as a user would) and prints energy MAE (meV/atom, meV/molecule), force MAE and RMSE
(meV/Å), epochs, wall time, peak RSS, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import mlff
from mlff.data.readers import read_structures
from mlff.train.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ethanol"


def evaluate_through_calculator(model_path: Path, test_file: Path) -> dict[str, float]:
    calc = mlff.MLFFCalculator(model_path, device="cpu", dtype="float64")
    de, dea, df = [], [], []
    start = time.perf_counter()
    for structure in read_structures(test_file, require=("energy", "forces")):
        atoms = structure.atoms.copy()
        atoms.calc = calc
        energy = atoms.get_potential_energy()
        de.append(energy - structure.energy)
        dea.append((energy - structure.energy) / len(atoms))
        df.append((atoms.get_forces() - structure.forces).ravel())
    seconds = time.perf_counter() - start
    de, dea, df = np.array(de), np.array(dea), np.concatenate(df)
    return {
        "energy_mae_meV_per_atom": 1e3 * np.abs(dea).mean(),
        "energy_mae_meV_per_molecule": 1e3 * np.abs(de).mean(),
        "forces_mae_meV_per_A": 1e3 * np.abs(df).mean(),
        "forces_rmse_meV_per_A": 1e3 * np.sqrt((df**2).mean()),
        "eval_ms_per_structure": 1e3 * seconds / len(de),
    }


def physics_checks(model_path: Path, test_file: Path) -> dict[str, float]:
    """Through MLFFCalculator in float64 on the first test frame: the largest deviation of
    the forces from central differences of the energy (eV/Å), and the energy change of
    the molecule under a random rotation (eV)."""
    from ase.calculators.fd import calculate_numerical_forces
    from scipy.spatial.transform import Rotation

    calc = mlff.MLFFCalculator(model_path, dtype="float64")
    atoms = read_structures(test_file)[0].atoms.copy()
    atoms.calc = calc
    fd_error = np.abs(atoms.get_forces() - calculate_numerical_forces(atoms, eps=1e-4)).max()
    energy = atoms.get_potential_energy()
    rotated = atoms.copy()
    rotated.positions = rotated.positions @ Rotation.random(random_state=0).as_matrix().T
    rotated.calc = calc
    return {
        "fd_force_max_error_eV_per_A": float(fd_error),
        "rotation_energy_change_eV": float(abs(rotated.get_potential_energy() - energy)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="painn", help="examples/ethanol/<model>.yaml (painn, schnet)")
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-clock budget")
    parser.add_argument("--out", default=None, help="output folder (default bench-out/<model>)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    args = parser.parse_args()

    config = load_config(EXAMPLES / f"{args.model}.yaml")
    training = config.training.model_copy(update={"max_minutes": args.minutes})
    config = config.model_copy(update={"training": training, "threads": args.threads})
    out = Path(args.out or f"bench-out/{args.model}")
    if (out / "last.ckpt").exists():
        sys.exit(f"{out} holds an earlier run; remove it or choose another --out")

    start = time.perf_counter()
    result = mlff.train(config, out_dir=out)
    wall = time.perf_counter() - start
    test = evaluate_through_calculator(result.model_path, Path(config.data.test))
    test.update(physics_checks(result.model_path, Path(config.data.test)))
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"# command: {' '.join(sys.argv)}")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads, mlff {mlff.__version__}")
    rows = {
        "model": args.model,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
        "train_wall_s": round(result.wall_seconds, 1),
        "total_wall_s": round(wall, 1),
        "peak_rss_MiB": round(peak_rss_mib, 1),
        **{k: float(f"{v:.4g}") for k, v in test.items()},
    }
    for key, value in rows.items():
        print(f"{key:30s} {value}")
    (out / "benchmark.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
