"""An imported MACE-MP-0-medium-sized model: mlff against mace-torch, same weights.

    python benchmarks/mace_import_speed.py --out bench-out/mace-import --sizes 3 5 8

mace-torch (its own virtual environment, ``--peers-dir``/venv-mace, see the peer setup
script) builds a ScaleShiftMACE with MACE-MP-0-medium's hyperparameters (89 elements,
128x0e+128x1o, max_ell 3, correlation 3, 2 interactions, r_max 6 Å, 10 Bessel functions,
radial MLP [64, 64, 64], 16x0e readout MLP, ZBL; random weights: only the cost matters)
and saves it as a ``.model`` file; mlff imports that file. Both then time energy + forces
calls through their ASE calculators in float32 on rattled fcc Cu supercells (4 n³ atoms),
with the protocol of ``speed.py`` (mlff: its ``--child`` mode; mace-torch: the peers'
``speed_ase.py``), one process per measurement, mlff and mace-torch alternating so that
both see the same machine load. Prints the command, the machine and a Markdown table;
records go to OUT/mace_import_speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from speed import machine, run_child  # noqa: E402 (benchmarks/ is not a package)

MP_MEDIUM = dict(r_max=6.0, num_bessel=10, num_polynomial_cutoff=5, max_ell=3,
                 interaction_cls="RealAgnosticResidualInteractionBlock",
                 interaction_cls_first="RealAgnosticResidualInteractionBlock",
                 num_interactions=2, hidden_irreps="128x0e+128x1o", MLP_irreps="16x0e",
                 avg_num_neighbors=60.0, atomic_numbers=list(range(1, 90)), correlation=3,
                 gate="silu", radial_MLP=[64, 64, 64], pair_repulsion=True)

BUILD = """
import sys, torch
sys.path.insert(0, {tests!r})
import mace_peer
torch.set_default_dtype(torch.float64)
model = mace_peer.build({{"name": "mp_medium", "model_class": "ScaleShiftMACE", "seed": 0,
                         "kwargs": {kwargs!r}}})
torch.save(model, {out!r})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/mace-import"))
    parser.add_argument("--sizes", nargs="+", type=int, default=[3, 5, 8])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--peers-dir", type=Path, default=Path(os.environ.get("PEERS", "/tmp/peers")))
    parser.add_argument("--peer-scripts", type=Path, default=ROOT.parent / "shared" / "peers",
                        help="folder with the peers' speed_ase.py")
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    print(f"$ python {' '.join(sys.argv)}")
    print(f"# {machine()}")
    args.out.mkdir(parents=True, exist_ok=True)
    peer_python = args.peers_dir / "venv-mace" / "bin" / "python"
    mace_file = args.out / "mp_medium.model"
    if not mace_file.exists():
        code = BUILD.format(tests=str(ROOT / "tests" / "imports"), kwargs=MP_MEDIUM,
                            out=str(mace_file))
        subprocess.run([str(peer_python), "-c", code], check=True)
    mlff_file = args.out / "mp_medium.mlff"
    if not mlff_file.exists():
        subprocess.run([sys.executable, "-m", "mlff", "import", str(mace_file), "--out",
                        str(mlff_file)], check=True)
    records = []
    with open(args.out / "mace_import_speed.jsonl", "a") as log:
        for n in args.sizes:
            mlff = run_child([sys.executable, str(HERE / "speed.py"), "--child", str(mlff_file),
                              args.dtype, f"cu:{n}", "--min-seconds", str(args.min_seconds),
                              "--max-steps", str(args.max_steps)], args.timeout)
            peer = run_child([str(peer_python), str(args.peer_scripts / "speed_ase.py"), "mace",
                              str(mace_file), args.dtype, str(n), str(args.min_seconds),
                              str(args.max_steps)], args.timeout)
            for record in (mlff, peer):
                record.update(size=n, code="mlff" if record is mlff else "mace-torch")
                log.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)
            records.append((n, mlff, peer))
    print(f"\n| Cu atoms | mlff µs/atom/step | mace-torch µs/atom/step | ratio | "
          f"mlff peak RSS MiB | mace-torch peak RSS MiB |\n| --- | --- | --- | --- | --- | --- |")
    for n, mlff, peer in records:
        if "error" in mlff or "error" in peer:
            print(f"| {4 * n**3} | {mlff.get('error', '')[:60]} | {peer.get('error', '')[:60]} | | | |")
            continue
        ratio = mlff["us_per_atom_step"] / peer["us_per_atom_step"]
        print(f"| {mlff['n_atoms']} | {mlff['us_per_atom_step']:.0f} | {peer['us_per_atom_step']:.0f} "
              f"| {ratio:.2f} | {mlff['peak_rss_MiB']:.0f} | {peer['peak_rss_MiB']:.0f} |")


if __name__ == "__main__":
    main()
