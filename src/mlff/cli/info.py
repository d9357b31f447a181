"""``mlff info MODEL``: what a model file holds."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from mlff.models.io import read_metadata


def add_parser(subparsers) -> None:
    """Register ``mlff info``."""
    parser = subparsers.add_parser(
        "info",
        help="show a model file's architecture, species, cutoff and metrics",
        description="Show what a .mlff model file holds (no code is executed).",
    )
    parser.add_argument("model", help="the .mlff model file")
    parser.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the metadata of ``args.model``."""
    metadata = read_metadata(args.model)
    console = Console()
    if args.json:
        console.print_json(json.dumps(metadata))
        return 0
    table = Table(title=str(args.model), show_header=False)
    table.add_row("architecture", metadata["architecture"])
    if "committee" in metadata:
        calibration = metadata.get("calibration") or {}
        table.add_row("committee", f"{metadata['committee']} members; calibration: "
                                   f"{calibration.get('method', 'none')}")
    table.add_row("species", " ".join(metadata["species_symbols"]))
    table.add_row("cutoff", f"{metadata['cutoff']} Å")
    table.add_row("dtype", metadata["dtype"])
    table.add_row("format / mlff / torch",
                  f"{metadata['format_version']} / {metadata['mlff_version']} / {metadata['torch_version']}")
    table.add_row("hyperparameters", json.dumps(metadata["hyperparameters"]))
    table.add_row("E0s (eV)", json.dumps(metadata["e0s"]))
    table.add_row("scale / shift (eV)", f"{metadata['scale']:.6g} / {metadata['shift']:.6g}")
    provenance = metadata.get("provenance") or {}
    for key in ("code", "code_version", "source", "sha256", "head", "licence"):
        if key in provenance:
            table.add_row(f"imported: {key}", str(provenance[key]))
    if metadata.get("data_fingerprint"):
        table.add_row("training data", str(metadata["data_fingerprint"]))
    for name, value in (metadata.get("test_metrics") or {}).items():
        table.add_row(f"test: {name}", f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    return 0
