"""``mlff validate MODEL --out DIR``: one report on whether a model can be trusted."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from ase import Atoms
from rich.table import Table
from rich.text import Text

from mlff.calculators.ase import MLFFCalculator
from mlff.cli.options import (
    add_device_options,
    add_head_option,
    add_label_key_options,
    label_keys,
    model_from_args,
)
from mlff.console import plain_console
from mlff.models.io import dtype_name
from mlff.models.predict import EnergyModel
from mlff.uq.committee import Committee

CHECK_NAMES = ("errors", "transfer", "md", "rdf", "crystal", "phonons", "molecule", "cost")

DESCRIPTION = """\
Validate a model and write DIR/report.md (with PNG figures in DIR/figures, each with a
JSON file of its data) and DIR/report.json. Checks (--checks; default: every check whose
inputs are given):

  errors    parity plots, error histograms, errors per config_type and element, error
            against uncertainty for a committee                      (needs --data)
  transfer  errors on sets from other conditions beside the in-distribution error, with
            the committee's uncertainty                          (needs --transfer)
  md        NVT temperature control, then NVE drift (meV/atom/ps) and fluctuation,
            shortest interatomic distance over time                   (a structure)
  rdf       radial distribution functions against --rdf-reference or the reference's
            own NVT run                                              (a structure)
  crystal   equation of state (a0, B0), elastic constants, vacancy formation energy,
            surface energies                                           (a crystal)
  phonons   dispersion and DOS with phonopy, frequencies at special points (a crystal)
  molecule  bond dissociation curves, dihedral scans, normal modes     (a molecule)
  cost      time per energy+forces call, model against reference (--reference)

Structures: --structure (else the first frame of the first --data file, else the
crystal repeated to >= 100 atoms); --crystal (else ASE's crystal of a one-element
model); --molecule (else the first --data frame when it is not periodic). Every check
setting can be changed with --set CHECK.OPTION=VALUE (see docs/validation.md), e.g.
--set crystal.surfaces=[[1,1,1]] --set cost.min_speedup=1000.

Exit status: 0 when every check ran, 1 when one failed to run (or, with --strict, when a
target was missed), 2 for a user error.
"""


def add_parser(subparsers) -> None:
    """Register ``mlff validate``."""
    parser = subparsers.add_parser(
        "validate", help="a report on a model: errors, transferability, MD stability, RDF, "
                         "crystal, phonons, molecules, cost", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="the .mlff model file")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="output folder (created; report.md, report.json, figures/)")
    parser.add_argument("--data", metavar="FILE", nargs="+", default=[],
                        help="labelled in-distribution test files ([NAME=]FILE)")
    parser.add_argument("--transfer", metavar="[NAME=]FILE", nargs="+", default=[],
                        help="labelled test files from other conditions (hotter, other "
                             "phases, surfaces, defects, reaction paths)")
    parser.add_argument("--reference", metavar="ORACLE.yaml", type=Path, default=None,
                        help="the reference method, as an oracle config (type: emt | tblite | "
                             "pyscf | ase)")
    parser.add_argument("--checks", nargs="+", choices=CHECK_NAMES, default=None,
                        metavar="CHECK", help=f"checks to run: {', '.join(CHECK_NAMES)}")
    parser.add_argument("--structure", metavar="FILE[@FRAME]", default=None,
                        help="structure of the md, rdf and cost checks")
    parser.add_argument("--supercell", metavar="N", type=int, nargs=3, default=None,
                        help="repeat the md/rdf/cost structure N1 N2 N3 times")
    parser.add_argument("--crystal", metavar="FILE|SYMBOL", default=None,
                        help="bulk cell of the crystal and phonon checks: a structure file, or "
                             "Cu, Cu:fcc, Cu:fcc:3.61 (ASE's bulk)")
    parser.add_argument("--molecule", metavar="FILE[@FRAME]", default=None,
                        help="molecule of the molecule check")
    parser.add_argument("--rdf-reference", metavar="TRAJ", default=None,
                        help="reference trajectory of the structure, for the rdf check")
    group = parser.add_argument_group("MD (md and rdf checks)")
    group.add_argument("--timestep", metavar="FS", type=float, default=None,
                       help="timestep in fs (default: 1)")
    group.add_argument("--temperature", metavar="K", type=float, default=None,
                       help="temperature in K (default: 300)")
    group.add_argument("--md-time", metavar="PS", type=float, default=None,
                       help="length of the NVE run in ps (default: 10)")
    group.add_argument("--nvt-time", metavar="PS", type=float, default=None,
                       help="length of the NVT run before it in ps (default: 2)")
    group.add_argument("--rdf-time", metavar="PS", type=float, default=None,
                       help="length of each RDF run in ps (default: 2)")
    group.add_argument("--seed", type=int, default=None, help="seed of the MD runs (default: 0)")
    parser.add_argument("--set", metavar="CHECK.OPTION=VALUE", action="append", default=[],
                        dest="overrides", help="any check setting (value in YAML syntax)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed")
    add_device_options(parser)
    add_head_option(parser)
    add_label_key_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the inputs, run the checks, write the report and print its summary."""
    from mlff.validate.inputs import apply_overrides, build_inputs
    from mlff.validate.runner import ValidationOptions, run_validation

    model = model_from_args(args)
    console = plain_console()
    inputs, notes = build_inputs(
        data=args.data, transfer=args.transfer, structure=args.structure,
        supercell=args.supercell, crystal=args.crystal, molecule=args.molecule,
        reference_trajectory=args.rdf_reference, species=model.species,
        keys=label_keys(args))
    _check_species(model, inputs)
    options = ValidationOptions()
    _apply_md_flags(options, args)
    apply_overrides(options, args.overrides)
    reference, reference_name = _reference(args.reference)
    for note in notes:
        console.print(note, style="dim", highlight=False, markup=False)
    report = run_validation(
        MLFFCalculator(model, device=model.device), args.out, inputs,
        reference=reference, checks=args.checks, options=options,
        model_name=describe(args.model, model), reference_name=reference_name,
        input_notes=notes, log=lambda line: console.print(line, highlight=False, markup=False))
    console.print(summary_table(report.results))
    for name, reason in report.not_run.items():
        console.print(f"not run: {name} ({reason})", highlight=False, markup=False)
    console.print(f"wrote {report.markdown} and {report.json}", highlight=False)
    if report.failed_checks:
        return 1
    missed = any(h.passed is False for r in report.results for h in r.headlines)
    return 1 if args.strict and missed else 0


def _apply_md_flags(options, args: argparse.Namespace) -> None:
    """The MD flags set both the md and the rdf checks' settings."""
    for flag, targets in (("timestep", ("timestep_fs",)), ("temperature", ("temperature_K",)),
                          ("seed", ("seed",))):
        value = getattr(args, flag)
        if value is not None:
            for name in targets:
                setattr(options.md, name, value)
                setattr(options.rdf, name, value)
    if args.md_time is not None:
        options.md.time_ps = args.md_time
    if args.nvt_time is not None:
        options.md.nvt_time_ps = args.nvt_time
    if args.rdf_time is not None:
        options.rdf.time_ps = args.rdf_time


def _reference(path: Path | None):
    """The reference calculator and its name, from an oracle config (imported lazily)."""
    if path is None:
        return None, None
    from mlff.oracles import load_oracle

    oracle = load_oracle(path)
    return oracle.make_calculator(), f"{oracle.name} ({path})"


def _check_species(model: EnergyModel, inputs) -> None:
    """Refuse, before any work, structures with elements the model does not know."""
    named: list[tuple[str, Atoms]] = []
    for labelled in inputs.test_sets + inputs.transfer_sets:
        named += [(s.source, s.atoms) for s in labelled.structures]
    for what in ("structure", "crystal", "molecule"):
        atoms = getattr(inputs, what)
        if atoms is not None:
            named.append((f"the {what} ({atoms.get_chemical_formula()})", atoms))
    for where, atoms in named:
        model.check_species(torch.as_tensor(atoms.numbers), where)


def describe(path: str | Path, model: EnergyModel) -> str:
    """``path (architecture, elements, cutoff, dtype[, committee])`` for the report."""
    from ase.data import chemical_symbols

    elements = ", ".join(chemical_symbols[z] for z in model.species)
    committee = f"; committee of {model.size}" if isinstance(model, Committee) else ""
    return (f"{path} ({model.hyperparameters.get('architecture', '?')}; {elements}; cutoff "
            f"{model.cutoff:g} Å; {dtype_name(model.dtype)}{committee})")


def summary_table(results) -> Table:
    """The headline figures of every check, with their verdicts."""
    from mlff.validate.result import fmt

    table = Table(title="validation summary")
    for column in ("check", "quantity", "model", "reference", "Δ", "verdict"):
        table.add_column(column)
    for result in results:
        if result.status != "ok":
            table.add_row(result.name, "check failed", "—", "—", "—", Text("failed", style="red"))
        for h in result.headlines:
            deviation = "—" if h.deviation is None else f"{fmt(h.deviation, 3)} {h.deviation_unit}"
            verdict = {True: Text("pass", style="green"), False: Text("fail", style="red"),
                       None: ""}[h.passed]
            table.add_row(result.name, h.quantity, f"{fmt(h.model)} {h.unit}",
                          "—" if h.reference is None else f"{fmt(h.reference)} {h.unit}",
                          deviation, verdict)
    return table
