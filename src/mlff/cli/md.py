"""``mlff md MODEL STRUCTURE``: molecular dynamics with a model, through ASE."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.table import Table

from mlff.calculators.ase import MLFFCalculator
from mlff.cli.options import add_device_options, add_head_option, model_from_args
from mlff.console import plain_console
from mlff.md import ENSEMBLES, THERMOSTATS, read_start_structure, run_md

DESCRIPTION = """\
Run molecular dynamics of one structure with a model, using ASE's integrators:

  nve   velocity Verlet (reports the total-energy drift, meV/atom/ps)
  nvt   Langevin (--friction) or Bussi stochastic velocity rescaling (--tau)
  npt   isotropic Martyna-Tobias-Klein barostat with Nose-Hoover chains
        (--pressure, --tau, --barostat-tau); needs a cell periodic in 3D

Initial velocities are Maxwell-Boltzmann at --temperature (seeded by --seed) with zero
total momentum. Writes OUT/trajectory.extxyz (positions, momenta, energy, forces every
--log-interval steps), OUT/thermo.log (time ps, Etot/Epot/Ekin eV, T K; stress GPa and
volume Å³ for npt) and OUT/summary.json, and prints the summary.
"""


def add_parser(subparsers) -> None:
    """Register ``mlff md``."""
    parser = subparsers.add_parser(
        "md",
        help="run NVE/NVT/NPT molecular dynamics with a model (ASE)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="the .mlff model file")
    parser.add_argument("structure", metavar="STRUCTURE",
                        help="starting structure: any file ASE reads (extxyz, POSCAR, CIF, ...)")
    parser.add_argument("--frame", metavar="INDEX", type=int, default=-1,
                        help="frame of STRUCTURE to start from, 0-based; negative counts from "
                             "the end (default: -1, the last frame)")
    parser.add_argument("--steps", metavar="N", type=int, required=True,
                        help="number of MD steps")
    parser.add_argument("--timestep", metavar="FS", type=float, required=True,
                        help="timestep in fs (0.5 for molecules with hydrogen, 1-2 for "
                             "heavier atoms)")
    parser.add_argument("--temperature", metavar="K", type=float, required=True,
                        help="temperature in K: thermostat target (nvt, npt) and temperature of "
                             "the initial velocities")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="nve",
                        help="statistical ensemble (default: nve)")
    parser.add_argument("--thermostat", choices=THERMOSTATS, default="langevin",
                        help="nvt thermostat (default: langevin)")
    parser.add_argument("--friction", metavar="PER_FS", type=float, default=0.01,
                        help="Langevin friction in 1/fs (default: 0.01, i.e. 10/ps)")
    parser.add_argument("--tau", metavar="FS", type=float, default=100.0,
                        help="thermostat time constant in fs, for bussi and npt (default: 100)")
    parser.add_argument("--pressure", metavar="BAR", type=float, default=1.0,
                        help="npt target pressure in bar (default: 1)")
    parser.add_argument("--barostat-tau", metavar="FS", type=float, default=1000.0,
                        help="npt barostat time constant in fs (default: 1000)")
    parser.add_argument("--log-interval", metavar="N", type=int, default=10,
                        help="write a thermo.log line and a trajectory frame every N steps "
                             "(default: 10)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial velocities and the thermostat noise (default: 0)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="output folder (created; existing outputs are overwritten)")
    parser.add_argument("--skin", metavar="ANGSTROM", type=float, default=0.5,
                        help="neighbour-list buffer: the list is rebuilt only after an atom "
                             "has moved skin/2 (default: 0.5; 0 rebuilds every step)")
    add_device_options(parser)
    add_head_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the structure, run MD, write the outputs and print the summary."""
    potential = model_from_args(args)
    atoms = read_start_structure(args.structure, args.frame)
    potential.check_species(torch.as_tensor(atoms.numbers), f"{args.structure}:{args.frame}")
    potential.requires_grad_(False)  # inference only: no parameter gradients
    calculator = MLFFCalculator(potential, device=potential.device, skin=args.skin)
    summary = run_md(
        calculator, atoms, args.steps, args.timestep, args.temperature,
        out_dir=args.out, ensemble=args.ensemble, thermostat=args.thermostat,
        pressure_bar=args.pressure, friction_per_fs=args.friction,
        thermostat_tau_fs=args.tau, barostat_tau_fs=args.barostat_tau,
        log_interval=args.log_interval, seed=args.seed,
    )
    summary_path = args.out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plain_console().print(summary_table(summary, f"MD of {args.structure}:{args.frame}"))
    return 0


_ROWS = (  # label, summary key, format
    ("ensemble", "ensemble", "{}"),
    ("thermostat", "thermostat", "{}"),
    ("atoms", "num_atoms", "{}"),
    ("steps", "steps", "{}"),
    ("timestep (fs)", "timestep_fs", "{:g}"),
    ("simulated time (ps)", "simulated_time_ps", "{:.4g}"),
    ("target temperature (K)", "target_temperature_K", "{:.1f}"),
    ("initial temperature (K)", "initial_temperature_K", "{:.1f}"),
    ("final temperature (K)", "final_temperature_K", "{:.1f}"),
    ("mean temperature (K)", "mean_temperature_K", "{:.1f}"),
    ("final potential energy (eV)", "final_potential_energy_eV", "{:.6f}"),
    ("energy drift (meV/atom/ps)", "energy_drift_meV_per_atom_per_ps", "{:.4g}"),
    ("initial volume (Å³)", "initial_volume_A3", "{:.4f}"),
    ("final volume (Å³)", "final_volume_A3", "{:.4f}"),
    ("wall time (s)", "wall_time_s", "{:.2f}"),
    ("speed (ms/step)", "ms_per_step", "{:.3f}"),
    ("trajectory", "trajectory", "{}"),
    ("thermo log", "thermo_log", "{}"),
)


def summary_table(summary: dict, title: str) -> Table:
    """Tabulate the run's summary in two columns; entries that do not apply are left out."""
    table = Table(title=title, show_header=False)
    for label, key, fmt in _ROWS:
        if summary.get(key) is not None:
            table.add_row(label, fmt.format(summary[key]))
    return table
