"""Silicon: are the campaign's labels converged in k-points for every kind of cell?

    OMP_NUM_THREADS=1 python benchmarks/silicon_kpoints.py --frames 5,7 --densities 2.8,4.5,6,8
    OMP_NUM_THREADS=1 python benchmarks/silicon_kpoints.py --frames 4,10 --densities 2.8,4.5,6

The oracle's k-point density (``examples/silicon/oracle.yaml``) was chosen on the rattled
8-atom cube. This labels frames of ``examples/silicon/labels.xyz`` (the shipped model's
CP2K labels: a hot cube, the seed and the hot (100) slab, the seed and the hot vacancy
cell) again with the oracle at each ``--densities`` value, the other settings unchanged,
and compares each with the densest of that frame: energy change per atom, force MAE and
largest force component change; that force MAE is the noise the labels put under a model's
held-out force error. A Markdown table goes to stdout and OUT/kpoints.md, every calculation to
OUT/kpoints.json, frame by frame, which a rerun reads instead of scanning that frame again
(resumed after a kill).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import ase.io
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "silicon"
# frame of labels.xyz: what it is
FRAMES = {
    8: "hot 8-atom cube (iteration 1)",
    5: "seed (100) slab, 12 atoms",
    7: "hot (100) slab, 12 atoms (iteration 1)",
    4: "seed vacancy cell, 15 atoms",
    10: "hot vacancy cell, 15 atoms (iteration 1)",
}


def scan_frame(frame: int, densities: list[float]) -> list[dict]:
    """labels.xyz frame ``frame`` labelled with the oracle at each k-point density (per
    Å⁻¹; :func:`mlff.oracles.converge.scan`): mesh, energy per atom (eV), forces (eV/Å)
    and wall time (s) of each calculation."""
    from mlff.oracles.config import load_oracle_config
    from mlff.oracles.converge import scan

    atoms = ase.io.read(EXAMPLE / "labels.xyz", index=frame)
    atoms.calc = None
    steps = scan(load_oracle_config(EXAMPLE / "oracle.yaml"), atoms, "kpoint_density",
                 densities)
    return [{"frame": frame, "density": step.value, "mesh": step.mesh,
             "energy_per_atom": step.energy_per_atom, "forces": step.forces.tolist(),
             "wall_s": step.wall_time} for step in steps]


def compare(rows: list[dict]) -> list[dict]:
    """Each frame's labels against its densest: ΔE (meV/atom, signed: this minus the
    reference; ``scan`` keeps only its absolute value), force MAE and largest component
    change (meV/Å)."""
    table = []
    for frame in dict.fromkeys(r["frame"] for r in rows):
        scanned = sorted((r for r in rows if r["frame"] == frame), key=lambda r: r["density"])
        reference = scanned[-1]
        for row in scanned:
            diff = np.asarray(row["forces"]) - np.asarray(reference["forces"])
            table.append({
                "frame": frame, "density": row["density"], "mesh": row["mesh"],
                "reference": row is reference,
                "d_energy": 1e3 * (row["energy_per_atom"] - reference["energy_per_atom"]),
                "force_mae": 1e3 * float(np.abs(diff).mean()),
                "force_max": 1e3 * float(np.abs(diff).max()), "wall_s": row["wall_s"]})
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| frame of labels.xyz | k-point density | mesh | ΔE (meV/atom) | "
             "F MAE (meV/Å) | max ΔF (meV/Å) | time (s) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for row in table:
        mesh = "x".join(str(k) for k in row["mesh"]) if row["mesh"] else "Γ"
        lines.append(f"| {row['frame']}: {FRAMES[row['frame']]} | {row['density']:g} | {mesh} | "
                     + (" ref | ref | ref |" if row["reference"] else
                        f"{row['d_energy']:+.2f} | {row['force_mae']:.1f} | "
                        f"{row['force_max']:.0f} |")
                     + f" {row['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/silicon-kpoints"))
    parser.add_argument("--frames", type=lambda s: [int(v) for v in s.split(",")],
                        default=list(FRAMES), help="frames of labels.xyz (default: %(default)s)")
    parser.add_argument("--densities", type=lambda s: [float(v) for v in s.split(",")],
                        default=[2.8, 4.5, 6.0, 8.0],
                        help="k-points per Å⁻¹; the largest is the reference (a density "
                             "giving the mesh of a smaller one is skipped)")
    args = parser.parse_args()
    unknown = sorted(set(args.frames) - set(FRAMES))
    if unknown:
        parser.error(f"--frames: {unknown} not among {sorted(FRAMES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "kpoints.json"
    scans = json.loads(store.read_text()) if store.exists() else []
    print(f"# {' '.join(sys.argv)}\n# {platform.node()}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    for frame in args.frames:
        if any(r["frame"] == frame and r["densities"] == args.densities for r in scans):
            continue
        rows = scan_frame(frame, args.densities)
        scans = [r for r in scans if r["frame"] != frame]
        scans.append({"frame": frame, "densities": args.densities, "rows": rows})
        store.write_text(json.dumps(scans))
        print(f"frame {frame}: " + ", ".join(f"density {r['density']:g} mesh {r['mesh']} "
                                             f"{r['wall_s']:.0f} s" for r in rows), flush=True)
    chosen = [r for scan in scans if scan["frame"] in args.frames for r in scan["rows"]]
    text = markdown(compare(chosen))
    (args.out / "kpoints.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
