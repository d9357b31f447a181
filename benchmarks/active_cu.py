"""Active learning on Cu with EMT as the oracle: uncertainty selection against random selection.

    python benchmarks/active_cu.py --out bench-out/active-cu [--iterations 6] [--labels 8]

Both runs start from the same 10 rattled 32-atom fcc cells (labelled by EMT), explore with
the same MD walkers (bulk, vacancy and (111) slab start structures at 300-1200 K), and
label the same number of frames per iteration; they differ only in which explored frames
are labelled: those whose committee force disagreement lies between the trust levels,
thinned by farthest-point sampling (``uncertainty``), or frames drawn at random
(``random``). The fixed test set is EMT MD of bulk at 300, 600, 900 and 1200 K, a (111)
slab and a vacancy cell, none of it seen in training. Prints one table per iteration
(labels, test force MAE of each run's committee) and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase.build import bulk, fcc111

from mlff.active.config import validate_learn_config
from mlff.active.loop import learn
from mlff.oracles import load_oracle, run_reference_md


def cells(seed: int) -> dict[str, object]:
    """Bulk (32 atoms), vacancy (31) and (111) slab (2x2x4 + vacuum) Cu, lightly rattled."""
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    vacancy = crystal.copy()
    del vacancy[0]
    slab = fcc111("Cu", size=(2, 2, 4), a=3.61, vacuum=6.0, periodic=True)
    for atoms in (crystal, vacancy, slab):
        atoms.rattle(0.02, seed=seed)
    return {"bulk": crystal, "vacancy": vacancy, "slab": slab}


def write_data(folder: Path) -> tuple[Path, Path, Path]:
    """Initial structures, exploration starts, and the EMT-labelled fixed test set."""
    folder.mkdir(parents=True, exist_ok=True)
    initial = []
    for k in range(10):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + 0.01 * (k % 3 - 1)), cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        initial.append(atoms)
    ase.io.write(folder / "initial.xyz", initial)
    starts = cells(seed=100)
    ase.io.write(folder / "starts.xyz", [starts["bulk"], starts["vacancy"], starts["slab"]])
    test_path = folder / "test.xyz"
    if not test_path.exists():
        oracle = load_oracle({"type": "emt"})
        test = []
        plan = [("bulk", t) for t in (300, 600, 900, 1200)] + [("slab", 600), ("vacancy", 600)]
        for i, (name, temperature) in enumerate(plan):
            frames = run_reference_md(cells(seed=200 + i)[name], oracle, temperature_K=temperature,
                                      steps=400, timestep_fs=2.0, every=50, seed=i)
            for frame in frames[1:]:
                frame.info["config_type"] = f"{name}_{temperature}K"
            test += frames[1:]
        ase.io.write(test_path, test)
    return folder / "initial.xyz", folder / "starts.xyz", test_path


def config(initial: Path, starts: Path, test: Path, strategy: str, iterations: int, labels: int,
           seed: int) -> dict:
    return {
        "seed": seed,
        "oracle": {"type": "emt"},
        "executor": {"workers": 2},
        "initial": {"structures": str(initial)},
        "explore": {"structures": str(starts), "walkers": 6, "temperatures": [300, 600, 900, 1200],
                    "steps": 300, "timestep": 2.0, "sample_every": 10, "min_distance": 1.9},
        "select": {"lower": 0.05, "upper": 0.5, "max_labels": labels, "strategy": strategy},
        "stop": {"max_iterations": iterations, "accurate_fraction": None},
        "test": str(test),
        "retrain": {"warm_start": True, "warm_max_epochs": 60, "warm_lr_factor": 0.5},
        "train": {
            "dtype": "float32",
            "data": {"valid_fraction": 0.15, "cache_dir": None},
            "model": {"architecture": "painn", "cutoff": 4.5, "num_features": 32,
                      "num_layers": 2, "num_radial": 12},
            "training": {"batch_size": 4, "max_epochs": 120, "lr": 0.002,
                         "scheduler": {"name": "cosine"},
                         "loss": {"energy_weight": 1.0, "forces_weight": 100.0}},
            "committee": {"size": 3, "processes": 2},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench-out/active-cu")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--labels", type=int, default=8, help="labels per iteration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    initial, starts, test = write_data(out / "data")
    print(f"# {' '.join(sys.argv)}")
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {}
    for strategy in ("uncertainty", "random"):
        start = time.perf_counter()
        run = learn(validate_learn_config(config(initial, starts, test, strategy, args.iterations,
                                                 args.labels, args.seed)),
                    out / strategy, progress=True)
        final = json.loads((out / strategy / "final" / "final.json").read_text())
        results[strategy] = {"summaries": run.summaries, "final": final,
                             "wall_s": time.perf_counter() - start}
    print("\n| iteration | labels | uncertainty: test F MAE (meV/Å) | random: test F MAE (meV/Å) "
          "| uncertainty: accurate fraction |")
    print("| --- | --- | --- | --- | --- |")
    pairs = zip(results["uncertainty"]["summaries"], results["random"]["summaries"], strict=True)
    for u, r in pairs:
        print(f"| {u['iteration']} | {u['train_labels']} / {r['train_labels']} | "
              f"{u['test']['forces_mae_meV_per_A']:.1f} | {r['test']['forces_mae_meV_per_A']:.1f} | "
              f"{u['accurate_fraction']:.2f} |")
    fu, fr = results["uncertainty"]["final"], results["random"]["final"]
    print(f"| final | {fu['total_labels']} / {fr['total_labels']} | "
          f"{fu['test']['forces_mae_meV_per_A']:.1f} | {fr['test']['forces_mae_meV_per_A']:.1f} | |")
    for name in ("uncertainty", "random"):
        print(f"# {name}: {results[name]['wall_s'] / 60:.1f} min")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
