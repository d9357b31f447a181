"""``mlff ipi MODEL STRUCTURE``: serve an mlff model to i-PI (path-integral MD)."""

from __future__ import annotations

import argparse

from mlff.cli.options import add_dtype_option
from mlff.console import plain_console

DESCRIPTION = """\
Serve energies, forces and virials of MODEL to an i-PI server (i-PI propagates the
nuclei: path-integral MD, thermostats, barostats). STRUCTURE gives the elements, atom
order and periodicity; it must match i-PI's initial structure.

  mlff ipi model.mlff start.xyz --write-input run     # run/init.xyz, run/input.xml (PIMD)
  cd run && i-pi input.xml &                          # start the server first
  mlff ipi model.mlff init.xyz --unix mlff            # then the client(s)

The client returns when i-PI ends the simulation. See docs/lammps.md (i-PI section).
"""


def add_parser(subparsers) -> None:
    """Register ``mlff ipi``."""
    parser = subparsers.add_parser(
        "ipi", help="serve a model to i-PI over a socket (path-integral MD)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="the .mlff model (or committee) file")
    parser.add_argument("structure", metavar="STRUCTURE", help="the system (any file ASE reads)")
    parser.add_argument("--frame", type=int, default=-1, metavar="INDEX",
                        help="frame of STRUCTURE (default: -1, the last)")
    parser.add_argument("--unix", default="mlff", metavar="NAME",
                        help="i-PI's UNIX socket name, its <address> (default: mlff)")
    parser.add_argument("--port", type=int, default=None,
                        help="connect over TCP/IP to this port instead (i-PI mode='inet')")
    parser.add_argument("--host", default="localhost", help="i-PI's host for --port")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_dtype_option(parser)
    group = parser.add_argument_group("writing an i-PI input instead of serving")
    group.add_argument("--write-input", metavar="DIR", default=None,
                       help="write DIR/init.xyz and DIR/input.xml (PIMD NVT) and exit")
    group.add_argument("--beads", type=int, default=8, help="ring-polymer beads (default: 8)")
    group.add_argument("--temperature", type=float, default=300.0, help="K (default: 300)")
    group.add_argument("--steps", type=int, default=1000, help="MD steps (default: 1000)")
    group.add_argument("--timestep", type=float, default=0.5, help="fs (default: 0.5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write an i-PI input, or serve forces until i-PI stops."""
    from mlff.calculators.ipi import run_client, write_ipi_input
    from mlff.md import read_start_structure

    console = plain_console(soft_wrap=True)
    structure = read_start_structure(args.structure, frame=args.frame)
    if args.write_input is not None:
        path = write_ipi_input(structure, args.write_input, address=args.unix, beads=args.beads,
                               temperature=args.temperature, steps=args.steps,
                               timestep=args.timestep)
        console.print(f"{path} (server: cd {path.parent} && i-pi input.xml; client: mlff ipi "
                      f"{args.model} {path.parent / 'init.xyz'} --unix {args.unix})")
        return 0
    calls = run_client(args.model, structure, unix=None if args.port else args.unix,
                       host=args.host, port=args.port, device=args.device, dtype=args.dtype)
    console.print(f"i-PI finished; {calls} force calculations served")
    return 0
