"""``mlff info MODEL``: what a model file holds."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from mlff.console import plain_console
from mlff.data.dispersion import dispersion_settings
from mlff.models.io import read_metadata
from mlff.threads import governor


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
    console = plain_console()
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
    table.add_row("scale / shift", f"{metadata['scale']:.6g} {_scale_unit(metadata)} / "
                                   f"{metadata['shift']:.6g} eV per atom")
    settings = dispersion_settings(metadata, str(args.model))
    table.add_row("dispersion", "none" if settings is None else
                  f"trained on labels minus D3, added back when run: {settings.describe()}")
    training = metadata.get("training") or {}
    if training.get("threads"):
        table.add_row("trained with", str(training["threads"]))
    table.add_row("threads here, now", governor().choice.describe())
    if metadata.get("data_fingerprint"):
        table.add_row("training data", str(metadata["data_fingerprint"]))
    for name, value in (metadata.get("provenance") or {}).items():
        if value is not None:
            table.add_row(f"imported: {name}", str(value))
    learned = metadata.get("active_learning")
    if learned:
        table.add_row("made by", f"mlff learn: {learned['labels']} labels of {learned['oracle']} "
                                 f"over {learned['iterations']} iteration(s); committee: "
                                 f"{learned['committee']}")
        table.add_row("oracle settings", json.dumps(learned.get("oracle_settings", {})))
        explore = learned.get("explore") or {}
        table.add_row("explored", f"{explore.get('walkers')} walkers, "
                                  f"{explore.get('temperatures')} K, pressures "
                                  f"{explore.get('pressures')} GPa, {explore.get('steps')} steps")
    for name, value in (metadata.get("test_metrics") or {}).items():
        table.add_row(f"test: {name}", f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    return 0


def _scale_unit(metadata: dict) -> str:
    """The scale is the training forces' RMS (eV/Å), or without forces the per-atom
    energies' standard deviation (eV): the stored metrics say which labels there were."""
    metrics = {**(metadata.get("training") or {}).get("valid_metrics", {}),
               **(metadata.get("test_metrics") or {})}
    if metrics and not any(key.startswith("forces") for key in metrics):
        return "eV (per-atom energy std)"
    return "eV/Å (force RMS)"
