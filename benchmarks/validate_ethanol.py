"""`mlff validate` on an ethanol model against PySCF PBE/def2-SVP (the data's level of
theory): the cost check (speed-up over DFT), bond dissociation and normal modes.

    OMP_NUM_THREADS=1 python benchmarks/validate_ethanol.py --out bench-out/validate-ethanol
    OMP_NUM_THREADS=1 python benchmarks/validate_ethanol.py --model runs/painn/model.mlff

Without --model, trains examples/ethanol/painn.yaml for --minutes first (`mlff train
... --set training.max_minutes=M`). Then runs

    mlff validate MODEL --data examples/ethanol/test_MD.xyz --reference pyscf.yaml \
        --molecule examples/ethanol/test_MD.xyz@0 --structure examples/ethanol/test_MD.xyz@0 \
        --checks errors molecule cost --set molecule.parts=[bonds,modes] ...

with `pyscf.yaml` = {type: pyscf, xc: PBE, basis: def2-SVP, max_cycle: 200} (stretched
bonds need more SCF cycles than the default 50). A PySCF energy + forces
call on ethanol takes 10-30 s on one thread, so the molecule check (two bond scans of
--bond-points geometries, a relaxation and 54 displaced geometries for the Hessian) takes
the better part of an hour; --skip-molecule leaves it out.
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

import torch

import mlff

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ethanol"
O_H = (2, 8)  # the hydroxyl O-H bond of ethanol in this data set (see its README)
C_C = (0, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/validate-ethanol"))
    parser.add_argument("--model", type=Path, default=None, help="a trained ethanol model")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget")
    parser.add_argument("--bond-points", type=int, default=8)
    parser.add_argument("--skip-molecule", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# {' '.join(sys.argv)}")
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"mlff {mlff.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    model = args.model
    if model is None:
        model = args.out / "train" / "model.mlff"
        subprocess.run([sys.executable, "-m", "mlff", "train", str(EXAMPLES / "painn.yaml"),
                        "--out", str(args.out / "train"), "--set",
                        f"training.max_minutes={args.minutes}", "--set", "threads=1"],
                       check=True)
    oracle = args.out / "pyscf.yaml"
    oracle.write_text("type: pyscf\nxc: PBE\nbasis: def2-SVP\nmax_cycle: 200\n")
    first = f"{EXAMPLES / 'test_MD.xyz'}@0"
    checks = ["errors", "cost"] + ([] if args.skip_molecule else ["molecule"])
    command = [
        sys.executable, "-m", "mlff", "validate", str(model), "--out", str(args.out / "validate"),
        "--data", str(EXAMPLES / "test_MD.xyz"), "--reference", str(oracle),
        "--structure", first, "--molecule", first, "--checks", *checks,
        "--set", "cost.model_calls=50", "--set", "cost.reference_calls=3",
        "--set", "molecule.parts=[bonds,modes]",
        "--set", f"molecule.bonds=[[{O_H[0]},{O_H[1]}],[{C_C[0]},{C_C[1]}]]",
        "--set", f"molecule.bond_points={args.bond_points}",
        "--set", "molecule.relax_fmax=0.005",
    ]
    print("$ " + " ".join(command[2:]))
    start = time.perf_counter()
    subprocess.run(command, check=False)
    print(f"validation: {(time.perf_counter() - start) / 60:.1f} min")
    report = json.loads((args.out / "validate" / "report.json").read_text())
    cost = report["checks"]["cost"]["summary"]
    print(f"\ncost on {cost['structure']}: model {cost['model_ms_per_call']:.2f} ms, PySCF "
          f"PBE/def2-SVP {cost['reference_ms_per_call'] / 1000:.1f} s per energy+forces call: "
          f"speed-up {cost['speedup']:.0f}x (threads: {cost['threads']})")
    errors = report["checks"]["errors"]["summary"]["overall"]
    print(f"test_MD: energy MAE {errors['energy_mae_meV_per_atom']:.3f} meV/atom, force MAE "
          f"{errors['forces_mae_meV_per_A']:.2f} meV/Å")
    if "molecule" in report["checks"]:
        check = report["checks"]["molecule"]
        print(f"molecule check: {check['status']} {check['error']}")
        for h in check["headlines"]:
            print(f"  {h['quantity']}: model {h['model']:.4g} {h['unit']}, reference "
                  f"{h['reference']} {h['deviation']} {h['deviation_unit']}")
        modes = check["summary"].get("modes", {})
        if "reference" in modes:
            print("  modes (cm-1) model:    ", " ".join(f"{f:.0f}" for f in
                                                     modes["model"]["frequencies_cm"]))
            print("  modes (cm-1) reference:", " ".join(f"{f:.0f}" for f in
                                                     modes["reference"]["frequencies_cm"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
