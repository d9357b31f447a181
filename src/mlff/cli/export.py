"""``mlff export MODEL --dtype float32 --out OUT``: a copy of a model file in another precision."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlff.cli.options import add_dtype_option
from mlff.errors import ConfigError
from mlff.models.io import dtype_name, read_metadata, save_model
from mlff.uq.committee import Committee
from mlff.uq.io import load_model, save_committee

DESCRIPTION = """\
Write a copy of a .mlff model file with its weights converted to another floating-point
precision, e.g. a model trained in float64 exported in float32 for faster MD. The new
file records its dtype in the metadata (see `mlff info`) and loads in it by default; the
E0s stay float64, and the architecture, species, provenance and metrics are kept.
"""


def add_parser(subparsers) -> None:
    """Register ``mlff export``."""
    parser = subparsers.add_parser(
        "export",
        help="copy a model file in another precision (float64 -> float32)",
        description=DESCRIPTION,
    )
    parser.add_argument("model", help="the .mlff model file")
    add_dtype_option(parser, "precision of the weights in the new file")
    parser.add_argument("--out", required=True, help="the new .mlff file (not MODEL itself)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``args.model`` to ``args.dtype`` and write it to ``args.out``."""
    source, out = Path(args.model), Path(args.out)
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ConfigError(f"--out {out}: that is the input model; choose another file.")
    saved = read_metadata(source)["dtype"]
    potential = load_model(source, dtype=args.dtype)
    save = save_committee if isinstance(potential, Committee) else save_model
    path = save(potential, out)
    print(f"{path} ({saved} -> {dtype_name(potential.dtype)})")
    return 0
