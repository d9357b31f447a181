"""``mlff evaluate MODEL DATA...``: errors of a model on labelled structure files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from mlff.cli.options import (
    add_device_options,
    add_head_option,
    add_label_key_options,
    label_keys,
    model_from_args,
)
from mlff.console import plain_console
from mlff.models.io import dtype_name

DESCRIPTION = """\
Compare a model's predictions with the labels of one or more structure files (any
format ASE reads; extxyz with energy/forces/stress). For each file, and for each
config_type in it, prints the number of structures and the errors:

  energy      MAE/RMSE per atom, meV/atom (|E_pred - E_ref| / N per structure)
  forces      MAE/RMSE over all force components, meV/Å
  stress      MAE/RMSE over the 9 components, meV/Å³ (3D-periodic frames with a label)

--json writes every metric (also the energy per structure in meV) and --plots writes
parity plots (PNG) of energy per atom, force and stress components.
"""


def add_parser(subparsers) -> None:
    """Register ``mlff evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="errors (MAE/RMSE) of a model on labelled data, with parity plots",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="the .mlff model file")
    parser.add_argument("data", metavar="DATA", nargs="+",
                        help="labelled structure files (extxyz or any format ASE reads, or a "
                             ".h5 packed by `mlff data pack` with the model cutoff)")
    parser.add_argument("--json", metavar="FILE", type=Path, default=None,
                        help="write all metrics of all files to this JSON file")
    parser.add_argument("--plots", metavar="DIR", type=Path, default=None,
                        help="write parity plots (PNG) into DIR, named "
                             "<data file stem>-{energy,forces,stress}_parity.png")
    parser.add_argument("--batch-size", metavar="N", type=int, default=32,
                        help="structures per forward pass (default: 32)")
    add_device_options(parser)
    add_head_option(parser)
    add_label_key_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.model`` on each of ``args.data``; print tables, write JSON and plots."""
    from mlff.validate.evaluate import evaluate_file  # matplotlib: keep `mlff --help` fast

    potential = model_from_args(args)
    keys = label_keys(args)
    console = plain_console()
    prefixes = _plot_prefixes([Path(p) for p in args.data])
    reports = []
    for path, prefix in zip(args.data, prefixes, strict=True):
        report = evaluate_file(potential, path, keys, batch_size=args.batch_size,
                               plots_dir=args.plots, plot_prefix=prefix)
        console.print(metrics_table(report))
        for plot in report["plots"]:
            console.print(f"  wrote {plot}", highlight=False)
        reports.append(report)
    if args.json is not None:
        summary = {"model": str(args.model), "device": args.device,
                   "dtype": dtype_name(potential.dtype), "files": reports}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {args.json}", highlight=False)
    return 0


def _plot_prefixes(paths: list[Path]) -> list[str]:
    """``"<stem>-"`` per file; files with the same stem get ``"<stem>-<position>-"``."""
    stems = [p.stem for p in paths]
    return [f"{s}-" if stems.count(s) == 1 else f"{s}-{i}-" for i, s in enumerate(stems)]


_COLUMNS = (  # header, metric name
    ("E MAE\nmeV/atom", "energy_mae_meV_per_atom"),
    ("E RMSE\nmeV/atom", "energy_rmse_meV_per_atom"),
    ("F MAE\nmeV/Å", "forces_mae_meV_per_A"),
    ("F RMSE\nmeV/Å", "forces_rmse_meV_per_A"),
    ("σ MAE\nmeV/Å³", "stress_mae_meV_per_A3"),
    ("σ RMSE\nmeV/Å³", "stress_rmse_meV_per_A3"),
)


def metrics_table(report: dict[str, Any]) -> Table:
    """Tabulate one file's metrics: one row per config_type, then the whole file."""
    metrics = report["metrics"]
    groups = [("all", metrics["overall"])]
    if len(metrics["config_types"]) > 1:
        groups = list(metrics["config_types"].items()) + groups
    columns = [(h, m) for h, m in _COLUMNS if any(m in g for _, g in groups)]
    table = Table(title=f"{report['file']} ({report['num_structures']} structures)")
    table.add_column("config_type")
    table.add_column("structures", justify="right")
    for header, _ in columns:
        table.add_column(header, justify="right")
    for index, (name, group) in enumerate(groups):
        values = [f"{group[m]:.4g}" if m in group else "—" for _, m in columns]
        table.add_row(name, str(group["num_structures"]), *values,
                      end_section=index == len(groups) - 2)
    return table
