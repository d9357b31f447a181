"""``mlff generate STRUCTURE --oracle ORACLE.yaml --out OUT``: reference MD, labelled frames."""

from __future__ import annotations

import argparse
from pathlib import Path

import ase
import ase.io
from rich.table import Table

from mlff.active.store import LabelStore, structure_key
from mlff.console import plain_console
from mlff.errors import ConfigError
from mlff.md import read_start_structure
from mlff.oracles import LabelResult, load_oracle, run_reference_md
from mlff.oracles.generate import ENSEMBLES

DESCRIPTION = """\
Run molecular dynamics with the reference method itself (ab initio MD when the oracle is
DFT) and keep every --every-th step with the energy, forces and stress the oracle
computed there: steps // every decorrelated, labelled frames for a first training set.

Initial velocities are Maxwell-Boltzmann at --temperature (seeded by --seed). nvt
integrates with ASE's Langevin thermostat (--friction), nve with velocity Verlet.

--out FILE.xyz (or .extxyz) writes extxyz (energy in info, forces in arrays, stress in
info; eV, eV/Å, eV/Å³); --out FILE.db (or an ASE database URL) adds each frame to a
label store, as `mlff label` does. Frames are written as they are made.

A run that was killed continues from its last written frame when the same command is
run again (each frame keeps its momenta and step; the thermostat noise after step n
depends only on --seed and n). --restart starts from step 0 instead (an extxyz output is
overwritten; frames already in a store are kept).
"""

_EXTXYZ = (".xyz", ".extxyz")


def add_parser(subparsers) -> None:
    """Register ``mlff generate``."""
    parser = subparsers.add_parser(
        "generate", help="reference (ab initio) MD with an oracle, keeping labelled frames",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("structure", metavar="STRUCTURE",
                        help="starting structure: any file ASE reads (extxyz, POSCAR, CIF, ...)")
    parser.add_argument("--frame", metavar="INDEX", type=int, default=-1,
                        help="frame of STRUCTURE to start from (default: -1, the last)")
    parser.add_argument("--oracle", metavar="ORACLE.yaml", type=Path, required=True,
                        help="oracle config (type: emt|tblite|pyscf|cp2k|gpaw|ase, ...)")
    parser.add_argument("--out", metavar="FILE_OR_DB", required=True,
                        help="FILE.xyz/.extxyz (overwritten), or a label store FILE.db / URL")
    parser.add_argument("--temperature", metavar="K", type=float, required=True,
                        help="temperature in K (initial velocities and thermostat)")
    parser.add_argument("--steps", metavar="N", type=int, required=True,
                        help="number of MD steps")
    parser.add_argument("--timestep", metavar="FS", type=float, required=True,
                        help="timestep in fs (0.5 with hydrogen, 1-2 for heavier atoms)")
    parser.add_argument("--every", metavar="K", type=int, required=True,
                        help="keep every K-th step (steps K, 2K, ...)")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="nvt",
                        help="nvt (Langevin, default) or nve (velocity Verlet)")
    parser.add_argument("--friction", metavar="PER_FS", type=float, default=0.01,
                        help="Langevin friction in 1/fs (default: 0.01)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the velocities and the thermostat noise (default: 0)")
    parser.add_argument("--iteration", metavar="I", type=int, default=0,
                        help="iteration recorded with each frame in a label store (default: 0)")
    parser.add_argument("--restart", action="store_true",
                        help="start from step 0 even if --out holds frames of an earlier run")
    parser.set_defaults(func=run)


def _resume_frame(args: argparse.Namespace, store: LabelStore | None,
                  source: str) -> ase.Atoms | None:
    """The last frame an earlier run of this command wrote to --out, or ``None``."""
    if args.restart:
        return None
    if store is not None:
        mine = [a for a in store.labelled() if a.info.get("source") == f"aimd:{source}"
                and a.info.get("md_seed") == args.seed and "md_step" in a.info]
        return max(mine, key=lambda a: a.info["md_step"]) if mine else None
    out = Path(args.out)
    if not out.is_file() or out.stat().st_size == 0:
        return None
    try:
        last = ase.io.read(out, index=-1, format="extxyz")
    except Exception as exc:  # a half-written last frame, or another file
        raise ConfigError(f"--out {out}: cannot read its last frame to resume from "
                          f"({type(exc).__name__}: {exc}); give --restart to start again.") from None
    if last.info.get("md_seed") != args.seed:
        raise ConfigError(f"--out {out} holds frames of another run (seed "
                          f"{last.info.get('md_seed')}, not {args.seed}); give --restart to "
                          "overwrite it, or another --out.")
    return last


def _is_store(out: str) -> bool:
    if "://" in out or Path(out).suffix == ".db":
        return True
    if Path(out).suffix in _EXTXYZ:
        return False
    raise ConfigError(f"--out {out}: give FILE.xyz or FILE.extxyz for extxyz, or FILE.db (or "
                      "an ASE database URL) for a label store.")


def run(args: argparse.Namespace) -> int:
    """Run the reference MD, writing each kept frame as it is made, and summarise."""
    oracle = load_oracle(args.oracle)
    to_store = _is_store(args.out)
    atoms = read_start_structure(args.structure, args.frame)
    source = f"{args.structure}:{args.frame}"
    store = LabelStore(args.out) if to_store else None
    if store is None:
        out = Path(args.out)
        if not out.parent.is_dir():
            raise ConfigError(f"--out {out}: the folder {out.parent} does not exist; create it.")
    resume = _resume_frame(args, store, source)
    if store is None and resume is None:
        Path(args.out).unlink(missing_ok=True)
    if resume is not None:
        plain_console(stderr=True).print(f"resuming from step {resume.info['md_step']} in {args.out}")

    skipped = 0

    def write(frame: ase.Atoms) -> None:
        nonlocal skipped
        frame.info["md_seed"] = args.seed
        if store is None:
            ase.io.write(args.out, frame, format="extxyz", append=True)
            return
        key = structure_key(frame)
        if store.has(key):  # the same run (same seed) into the same store again
            skipped += 1
            return
        provenance = oracle.provenance(args.iteration, source=f"aimd:{source}",
                                       md_step=frame.info["md_step"],
                                       md_seed=args.seed, temperature_K=args.temperature)
        result = LabelResult(True, frame, None, frame.info["wall_time"])
        store.add_label(result, key, provenance)

    frames = run_reference_md(
        atoms, oracle, temperature_K=args.temperature, steps=args.steps,
        timestep_fs=args.timestep, every=args.every, seed=args.seed, ensemble=args.ensemble,
        friction_per_fs=args.friction, on_frame=write, resume=resume,
    )
    table = Table(title=f"mlff generate {source} with {oracle.name}", show_header=False)
    table.add_row("frames written", str(len(frames) - skipped))
    if resume is not None:
        table.add_row("resumed from step", str(resume.info["md_step"]))
    if skipped:
        table.add_row("frames already in the store", str(skipped))
    table.add_row("steps", f"{args.steps} x {args.timestep:g} fs, every {args.every}")
    table.add_row("ensemble", f"{args.ensemble} at {args.temperature:g} K")
    if frames:
        table.add_row("last potential energy (eV)", f"{frames[-1].get_potential_energy():.6f}")
    table.add_row("output", str(args.out))
    plain_console().print(table)
    return 0
