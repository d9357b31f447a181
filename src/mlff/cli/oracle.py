"""``mlff oracle check CONFIG STRUCTURE``: convergence of a DFT oracle's cutoff and k-points."""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.units import Rydberg
from mlff.console import plain_console
from rich.table import Table

from mlff.md import read_start_structure
from mlff.errors import ConfigError
from mlff.oracles import load_oracle
from mlff.oracles.converge import (
    ENERGY_TOLERANCE,
    FORCE_TOLERANCE,
    Step,
    check_scannable,
    converged_value,
    scan,
)

DESCRIPTION = """\
Label STRUCTURE with the DFT oracle in CONFIG (type cp2k or gpaw) at several plane-wave
cutoffs, then (for a cell periodic in 3D) at several k-point densities, and print how
much the energy per atom, the forces and the stress change against the most accurate
step. Pick the cheapest settings converged to 1 meV/atom and 10 meV/Å (--energy-tol,
--force-tol) before spending hours of DFT; check on a structure like the ones you will
label (same cell size: k-points depend on it), e.g. a rattled cell.

Defaults: cutoffs at 0.6, 0.8, 1.0, 1.2 and 1.4 times the config's cutoff; k-point
densities 1.5, 2, 3, 4 and 5 per Å⁻¹ (meshes that repeat are skipped).
"""


def add_parser(subparsers) -> None:
    """Register ``mlff oracle`` and its action ``check``."""
    parser = subparsers.add_parser("oracle", help="check a DFT oracle's convergence",
                                   description="Tools for reference-method settings.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="energy and force changes with cutoff and k-points, as a table",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("config", metavar="CONFIG", type=Path, help="oracle config (cp2k, gpaw)")
    check.add_argument("structure", metavar="STRUCTURE", help="any file ASE reads")
    check.add_argument("--frame", metavar="INDEX", type=int, default=0,
                       help="frame of STRUCTURE (default: 0)")
    check.add_argument("--cutoffs", metavar="EV,...", type=_floats, default=None,
                       help="cutoffs in eV (default: 0.6-1.4 x the config's)")
    check.add_argument("--kpoint-densities", metavar="D,...", type=_floats,
                       default=[1.5, 2.0, 3.0, 4.0, 5.0],
                       help="k-point densities per Å⁻¹ (default: 1.5,2,3,4,5)")
    check.add_argument("--energy-tol", metavar="EV", type=float, default=ENERGY_TOLERANCE,
                       help="energy tolerance, eV/atom (default: 0.001)")
    check.add_argument("--force-tol", metavar="EV_PER_A", type=float, default=FORCE_TOLERANCE,
                       help="force tolerance, eV/Å (default: 0.01)")
    check.set_defaults(func=run_check)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers")


def _table(title: str, steps: list[Step], setting: str, cp2k: bool, args) -> Table:
    table = Table(title=title)
    table.add_column("cutoff (eV)" if setting == "cutoff" else "k-points / Å⁻¹", justify="right")
    if setting == "cutoff" and cp2k:
        table.add_column("(Ry)", justify="right")
    for name in ("k-mesh", "E (eV/atom)", "ΔE (meV/atom)", "max ΔF (meV/Å)",
                 "max Δσ (GPa)", "time (s)", "converged"):
        table.add_column(name, justify="right")
    for step in steps:
        row = [f"{step.value:g}"]
        if setting == "cutoff" and cp2k:
            row.append(f"{step.value / Rydberg:.0f}")
        mesh = "Γ" if step.mesh is None else "x".join(str(n) for n in step.mesh)
        reference = step is steps[-1]
        row += [mesh, f"{step.energy_per_atom:.6f}",
                "ref" if reference else f"{1e3 * step.d_energy:.2f}",
                "ref" if reference else f"{1e3 * step.d_force:.1f}",
                "ref" if reference or step.d_stress != step.d_stress
                else f"{step.d_stress * 160.21766:.3f}",
                f"{step.wall_time:.1f}",
                "" if reference else ("yes" if step.converged(args.energy_tol, args.force_tol)
                                      else "no")]
        table.add_row(*row)
    return table


def run_check(args: argparse.Namespace) -> int:
    """Scan cutoff then k-points and print both tables with the converged settings."""
    oracle = load_oracle(args.config)
    config = oracle.config
    check_scannable(config)
    atoms = read_start_structure(args.structure, args.frame)
    console = plain_console(soft_wrap=True)
    cutoffs = args.cutoffs or [round(f * config.cutoff, 1) for f in (0.6, 0.8, 1.0, 1.2, 1.4)]
    if config.type == "gpaw" and config.mode == "lcao":
        raise ConfigError("oracle check: GPAW's lcao mode has no plane-wave cutoff to scan; "
                          "use mode: pw.")
    cp2k = config.type == "cp2k"
    console.print(f"{oracle.name} on {args.structure}:{args.frame} ({len(atoms)} atoms, "
                  f"{atoms.get_chemical_formula()})")
    steps = scan(config, atoms, "cutoff", cutoffs)
    console.print(_table("cutoff (k-points as configured)", steps, "cutoff", cp2k, args))
    best = converged_value(steps, args.energy_tol, args.force_tol)
    console.print("cutoff: " + (f"converged from {best:g} eV" if best else
                                "not converged below the largest cutoff; extend --cutoffs"))
    if atoms.pbc.all():
        steps = scan(config, atoms, "kpoint_density", args.kpoint_densities)
        console.print(_table(f"k-points (cutoff {config.cutoff:g} eV)", steps,
                             "kpoint_density", cp2k, args))
        best = converged_value(steps, args.energy_tol, args.force_tol)
        console.print("kpoint_density: " + (f"converged from {best:g} per Å⁻¹" if best else
                      "not converged below the densest mesh; extend --kpoint-densities"))
    else:
        console.print("k-points: the structure is not periodic in 3D (Γ only)")
    console.print(f"tolerances: {1e3 * args.energy_tol:g} meV/atom, "
                  f"{1e3 * args.force_tol:g} meV/Å against the last row (ref)")
    return 0
