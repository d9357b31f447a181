"""``mlff import SOURCE --out model.mlff``: a model trained by another code, as an mlff model."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mlff.errors import ConfigError
from mlff.models.io import save_model


def add_parser(subparsers) -> None:
    """Register ``mlff import``."""
    parser = subparsers.add_parser(
        "import",
        help="import a mace-torch model (.model or state-dict .pt) as an .mlff model",
        description="Rebuild a foreign model as an mlff model file; no code from the file runs.",
    )
    parser.add_argument("source", help="mace-torch .model file or state-dict export .pt")
    parser.add_argument("--out", required=True, help="the .mlff file to write")
    parser.add_argument("--head", default=None, help="head of a multi-head model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import ``args.source`` and write ``args.out``."""
    source = Path(args.source)
    if source.suffix not in (".model", ".pt", ".pth"):
        raise ConfigError(f"{source}: expected a mace-torch .model or .pt file.")
    from mlff.imports.mace import load_mace

    potential, provenance = load_mace(source, head=args.head)
    path = save_model(potential, args.out)
    Console().print(f"{provenance['code']} {provenance['model_class']} "
                    f"(head {provenance['head']}) -> {path}")
    return 0
