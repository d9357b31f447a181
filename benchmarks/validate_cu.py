"""`mlff validate` on a copper model trained on EMT data, against EMT itself.

    OMP_NUM_THREADS=1 python benchmarks/validate_cu.py --out bench-out/validate-cu

1. Writes EMT-labelled copper data (benchmarks/validate_cu_data.py: MD of bulk cells at
   300-1200 K, strained cells, an EOS scan, a vacancy cell, (100)/(110)/(111) slabs;
   a test set and three transfer sets: 1500 K bulk, a (211) step slab, a divacancy).
2. Trains a MACE model on it (float64, cutoff 5 Å) for --epochs epochs (an epoch budget,
   not a wall-clock one, so that a loaded machine gives the same model; about 30 s per
   epoch on one quiet thread).
3. Runs `mlff validate` against EMT (an oracle config `type: emt`) on a 108-atom cell:
   errors, transfer, md (2 ps NVT then 10 ps NVE at 300 K, 2 fs), rdf, crystal,
   phonons, cost.
4. Prints the model against EMT: lattice constant, bulk modulus, vacancy formation
   energy, phonon frequencies at X and L, and the NVE drift, with the issue's targets
   (0.5 %, 5 %, 50 meV, 5 %, 1 meV/atom/ps).

--reuse keeps the data and the trained model of an earlier run in OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import torch
import yaml
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_cu_data import A0, write_all  # noqa: E402

import mlff  # noqa: E402


def config(data: dict[str, Path], epochs: int) -> dict:
    """The training config: MACE, float64, energy + forces + stress, stage two at 3/4."""
    return {
        "seed": 0, "dtype": "float64", "threads": 1,
        "data": {"train": str(data["train"]), "valid_fraction": 0.08, "test": str(data["test"]),
                 "cache_dir": None},
        "model": {"architecture": "mace", "cutoff": 5.0, "num_channels": 16, "max_L": 0,
                  "max_ell": 2, "correlation": 2, "num_interactions": 2, "num_radial": 8},
        "training": {
            "batch_size": 4, "max_epochs": epochs, "lr": 0.01,
            "amsgrad": True, "ema_decay": 0.99,
            "scheduler": {"name": "plateau", "factor": 0.5, "patience": 6, "min_lr": 1e-5},
            "loss": {"energy_weight": 10.0, "forces_weight": 100.0, "stress_weight": 1000.0},
            "stage_two": {"start_fraction": 0.75, "energy_weight": 1000.0,
                          "forces_weight": 100.0, "stress_weight": 1000.0, "lr": 0.001},
        },
    }


def validate_command(model: Path, data: dict[str, Path], out: Path) -> list[str]:
    """The `mlff validate` command line of this benchmark."""
    structure = out / "cu108.xyz"
    ase.io.write(structure, bulk("Cu", "fcc", a=A0, cubic=True).repeat(3))
    oracle = out / "emt.yaml"
    oracle.write_text("type: emt\n")
    return [
        sys.executable, "-m", "mlff", "validate", str(model), "--out", str(out / "validate"),
        "--data", str(data["test"]),
        "--transfer", *(f"{name}={data[name]}" for name in ("hot_1500K", "slab_211",
                                                            "divacancy")),
        "--reference", str(oracle), "--structure", str(structure), "--crystal", f"Cu:fcc:{A0}",
        "--checks", "errors", "transfer", "md", "rdf", "crystal", "phonons", "cost",
        "--timestep", "2", "--temperature", "300", "--nvt-time", "2", "--md-time", "10",
        "--rdf-time", "2", "--set", "cost.reference_calls=10",
    ]


ROWS = (  # check, quantity, label
    ("crystal", "lattice constant a", "lattice constant a0 (Å)"),
    ("crystal", "bulk modulus B0", "bulk modulus B0 (GPa)"),
    ("crystal", "vacancy formation energy (Cu)", "vacancy formation energy (eV)"),
    ("phonons", "phonon frequencies at X", "phonons at X (THz)"),
    ("phonons", "phonon frequencies at L", "phonons at L (THz)"),
    ("md", "NVE energy drift", "NVE drift, 10 ps at 300 K (meV/atom/ps)"),
)


def print_table(report: dict) -> None:
    """The issue's figures: model, EMT, deviation, target, verdict."""
    headlines = {(name, h["quantity"]): h for name, check in report["checks"].items()
                 for h in check["headlines"]}
    print("| quantity | model | EMT | deviation | target | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for check, quantity, label in ROWS:
        h = headlines.get((check, quantity))
        if h is None:
            print(f"| {label} | (not computed) | | | | |")
            continue
        print(f"| {label} | {_fmt(h['model'])} | {_fmt(h['reference'])} | "
              f"{_fmt(h['deviation'])} {h['deviation_unit']} | {h['target_text']} | "
              f"{'yes' if h['passed'] else 'no'} |")
    errors = report["checks"]["errors"]["summary"]["overall"]
    print(f"\ntest set: energy MAE {errors['energy_mae_meV_per_atom']:.3f} meV/atom, force MAE "
          f"{errors['forces_mae_meV_per_A']:.2f} meV/Å, stress MAE "
          f"{errors.get('stress_mae_meV_per_A3', float('nan')):.3f} meV/Å³")
    for name, row in report["checks"]["transfer"]["summary"]["sets"].items():
        print(f"  {name}: force MAE {row['forces_mae_meV_per_A']:.2f} meV/Å "
              f"(x{row.get('forces_mae_ratio', 1.0):.2f})")
    cost = report["checks"]["cost"]["summary"]
    print(f"cost on Cu108: model {cost['model_ms_per_call']:.1f} ms, EMT "
          f"{cost['reference_ms_per_call']:.1f} ms per energy+forces call")
    md = report["checks"]["md"]["summary"]
    print(f"MD: NVT mean T {md.get('nvt_mean_temperature_K', float('nan')):.1f} K, NVE "
          f"fluctuation {md.get('nve_fluctuation_meV_per_atom', float('nan')):.4f} meV/atom, "
          f"min distance {md['min_distance_A']:.3f} Å, {md['ms_per_step']:.1f} ms/step")


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(f"{v:.3f}" for v in value)
    return f"{value:.4g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/validate-cu"))
    parser.add_argument("--epochs", type=int, default=16, help="training epochs")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the data and model of an earlier run in OUT")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# {' '.join(sys.argv)}")
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"mlff {mlff.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    start = time.perf_counter()
    data = write_all(args.out / "data")
    model = args.out / "train" / "model.mlff"
    if not (args.reuse and model.exists()):
        cfg = config(data, args.epochs)
        (args.out / "cu_mace.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        result = mlff.train(cfg, out_dir=args.out / "train")
        print(f"trained {result.epochs} epochs in {result.wall_seconds / 60:.1f} min")
    trained = time.perf_counter()
    command = validate_command(model, data, args.out)
    print("$ " + " ".join(command[2:]))
    subprocess.run(command, check=False)
    report = json.loads((args.out / "validate" / "report.json").read_text())
    print(f"\ndata + training {(trained - start) / 60:.1f} min, validation "
          f"{(time.perf_counter() - trained) / 60:.1f} min\n")
    print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
