"""``mlff import SOURCE --out model.mlff``: a model trained by another code as an mlff model."""

from __future__ import annotations

import argparse

from mlff.errors import ConfigError
from mlff.models.precision import PRECISIONS

DESCRIPTION = """\
Import a model trained by another code and write it as an ordinary .mlff file, which
evaluate, md, validate, committee, export and deploy then use like any other. SOURCE is
one of the SevenNet models shipped with the sevenn package (sevennet-0,
sevennet-0-22may2024, sevennet-mf-0, sevennet-l3i5; nothing is downloaded), a SevenNet
checkpoint (.pth), or a mace-torch model (.model) or state dict (.pt). No code from the
file runs. `mlff info` shows where the weights came from and their licence.
"""


def add_parser(subparsers) -> None:
    """Register ``mlff import``."""
    parser = subparsers.add_parser(
        "import",
        help="import a SevenNet or MACE model as a .mlff file",
        description=DESCRIPTION,
    )
    parser.add_argument("source", help="a model name (e.g. sevennet-0) or a model file")
    parser.add_argument("--out", required=True, help="the .mlff file to write")
    parser.add_argument("--head", default=None,
                        help="head or fidelity of a multi-head model "
                             "(SevenNet-MF-0: PBE or R2SCAN)")
    parser.add_argument("--dtype", choices=PRECISIONS, default="float64",
                        help="precision of the stored weights (default: float64)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import ``args.source`` and write ``args.out``."""
    from mlff.imports import import_model

    if not str(args.out).endswith(".mlff"):
        raise ConfigError(f"--out {args.out}: model files end in .mlff.")
    path = import_model(args.source, out=args.out, head=args.head, dtype=args.dtype)
    print(f"{path} (from {args.source}{f', head {args.head}' if args.head else ''}, {args.dtype})")
    return 0
