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
OUT/kpoints.json, which a rerun reads instead of recomputing (resumed after a kill).
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


def label_at(frame: int, density: float) -> dict:
    """CP2K energy (eV) and forces (eV/Å) of labels.xyz frame ``frame`` with the oracle at
    k-point ``density`` (per Å⁻¹), its mesh and wall time (s)."""
    from mlff.oracles.config import load_oracle_config
    from mlff.oracles.cp2k import kpoint_mesh
    from mlff.oracles.oracle import Oracle

    atoms = ase.io.read(EXAMPLE / "labels.xyz", index=frame)
    atoms.calc = None
    config = load_oracle_config(EXAMPLE / "oracle.yaml").model_copy(
        update={"kpoint_density": density, "kpts": None})
    start = time.perf_counter()
    result = Oracle(config).label(atoms)
    if not result.ok or result.atoms is None:
        raise RuntimeError(f"frame {frame}, density {density}: {result.reason}")
    return {"frame": frame, "density": density, "mesh": kpoint_mesh(config, atoms),
            "energy": float(result.atoms.get_potential_energy()),
            "forces": np.asarray(result.atoms.get_forces()).tolist(),
            "natoms": len(atoms), "wall_s": time.perf_counter() - start}


def compare(rows: list[dict], frames: list[int], densities: list[float]) -> list[dict]:
    """Each frame's labels against its densest of ``densities``: ΔE (meV/atom, signed:
    this minus the reference), force MAE and largest component change (meV/Å)."""
    table = []
    for frame in frames:
        by_density = {r["density"]: r for r in rows
                      if r["frame"] == frame and r["density"] in densities}
        if len(by_density) < 2:
            continue
        reference = by_density[max(by_density)]
        for density in sorted(by_density):
            row = by_density[density]
            diff = np.asarray(row["forces"]) - np.asarray(reference["forces"])
            table.append({
                "frame": frame, "density": density, "mesh": row["mesh"],
                "d_energy": 1e3 * (row["energy"] - reference["energy"]) / row["natoms"],
                "force_mae": 1e3 * float(np.abs(diff).mean()),
                "force_max": 1e3 * float(np.abs(diff).max()), "wall_s": row["wall_s"]})
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| frame of labels.xyz | k-point density | mesh | ΔE (meV/atom) | "
             "F MAE (meV/Å) | max ΔF (meV/Å) | time (s) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for row in table:
        mesh = "x".join(str(k) for k in row["mesh"]) if row["mesh"] else "Γ"
        ref = row["density"] == max(r["density"] for r in table if r["frame"] == row["frame"])
        lines.append(f"| {row['frame']}: {FRAMES[row['frame']]} | {row['density']:g} | {mesh} | "
                     + (" ref | ref | ref |" if ref else
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
                        help="k-points per Å⁻¹; the largest is the reference")
    args = parser.parse_args()
    unknown = sorted(set(args.frames) - set(FRAMES))
    if unknown:
        parser.error(f"--frames: {unknown} not among {sorted(FRAMES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "kpoints.json"
    rows = json.loads(store.read_text()) if store.exists() else []
    print(f"# {' '.join(sys.argv)}\n# {platform.node()}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    for frame in args.frames:
        for density in sorted(args.densities):
            if any(r["frame"] == frame and r["density"] == density for r in rows):
                continue
            row = label_at(frame, density)
            rows.append(row)
            store.write_text(json.dumps(rows))
            print(f"frame {frame} density {density:g} mesh {row['mesh']}: "
                  f"{row['wall_s']:.0f} s", flush=True)
    text = markdown(compare(rows, args.frames, args.densities))
    (args.out / "kpoints.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
