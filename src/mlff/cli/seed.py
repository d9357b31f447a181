"""``mlff data seed CRYSTAL --out SEEDS.xyz``: bulk, surface, defect and amorphous cells."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import ase.io
from mlff.console import plain_console
from rich.table import Table

from mlff.data.seed import seed_structures
from mlff.errors import ConfigError
from mlff.md import read_start_structure

DESCRIPTION = """\
From one bulk crystal (any file ASE reads; give the conventional cell, as the Miller
indices of the slabs refer to it), write a first, diverse set of unlabelled structures
to OUT (extxyz), each tagged with config_type: strained and rattled bulk supercells,
low-index surface slabs, vacancies, interstitials and an amorphous cell (melt-quenched
with --quench-oracle, e.g. a cheap oracle or type: ase with a trained model's
calculator; without it, random packing at the crystal's density). Label them with
`mlff label OUT --oracle ORACLE.yaml --out labels.db`.
"""


def add_parser(actions) -> None:
    """Register ``mlff data seed``."""
    parser = actions.add_parser("seed", help="bulk, surface, defect and amorphous cells "
                                "from one crystal", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("crystal", metavar="CRYSTAL", help="bulk crystal: any file ASE reads")
    parser.add_argument("--out", required=True, metavar="SEEDS.xyz", help="extxyz output")
    parser.add_argument("--frame", metavar="INDEX", type=int, default=0)
    parser.add_argument("--min-length", type=float, default=8.0, metavar="Å",
                        help="supercell width at least this (default: 8 Å)")
    parser.add_argument("--strained", type=int, default=4, metavar="N")
    parser.add_argument("--rattled", type=int, default=4, metavar="N")
    parser.add_argument("--strain", type=float, default=0.04,
                        help="largest strain component (default: 0.04)")
    parser.add_argument("--rattle", type=float, default=0.08, metavar="Å",
                        help="displacement standard deviation (default: 0.08 Å)")
    parser.add_argument("--surfaces", default="100,110,111", metavar="HKL,...",
                        help="Miller indices of the slabs (default: 100,110,111)")
    parser.add_argument("--layers", type=int, default=2,
                        help="slab thickness in repeats of the surface cell (default: 2)")
    parser.add_argument("--vacuum", type=float, default=7.5, metavar="Å")
    parser.add_argument("--vacancies", type=int, default=2, metavar="N")
    parser.add_argument("--interstitials", type=int, default=2, metavar="N")
    parser.add_argument("--amorphous", type=int, default=1, metavar="N")
    parser.add_argument("--quench-oracle", type=Path, default=None, metavar="ORACLE.yaml",
                        help="melt and quench the amorphous cells with this oracle's calculator")
    parser.add_argument("--melt", type=float, default=3000.0, metavar="K")
    parser.add_argument("--quench-steps", type=int, default=400, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def _miller(text: str) -> list[tuple[int, int, int]]:
    result = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if len(item) != 3 or not item.isdigit():
            raise ConfigError(f"--surfaces {text!r}: each entry is three digits, e.g. 100,110,111.")
        result.append(tuple(int(c) for c in item))
    return result  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    """Write the seed structures and a count per config_type."""
    crystal = read_start_structure(args.crystal, args.frame)
    calculator = None
    if args.quench_oracle is not None and args.amorphous:
        from mlff.oracles import load_oracle

        calculator = load_oracle(args.quench_oracle).make_calculator()
    structures = seed_structures(
        crystal, min_length=args.min_length, n_strained=args.strained, n_rattled=args.rattled,
        strain=args.strain, rattle=args.rattle, surfaces=_miller(args.surfaces),
        layers=args.layers, vacuum=args.vacuum, n_vacancies=args.vacancies,
        n_interstitials=args.interstitials, n_amorphous=args.amorphous,
        quench_calculator=calculator, melt_K=args.melt, quench_steps=args.quench_steps,
        seed=args.seed,
    )
    ase.io.write(args.out, structures, format="extxyz")
    table = Table(title=f"mlff data seed {args.crystal} -> {args.out}")
    table.add_column("config_type")
    table.add_column("structures", justify="right")
    table.add_column("atoms", justify="right")
    sizes: dict[str, set[int]] = {}
    for atoms in structures:
        sizes.setdefault(atoms.info["config_type"], set()).add(len(atoms))
    for name, count in Counter(a.info["config_type"] for a in structures).items():
        table.add_row(name, str(count), ", ".join(map(str, sorted(sizes[name]))))
    plain_console().print(table)
    return 0
