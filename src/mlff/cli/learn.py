"""``mlff learn CONFIG.yaml --out DIR``: the active-learning loop (resumes when rerun)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Register ``mlff learn``."""
    parser = subparsers.add_parser(
        "learn",
        help="active learning: explore with a committee, label uncertain frames, retrain",
        description=(
            "Run the active-learning loop the YAML config describes (see docs/active_learning.md). "
            "Everything goes to --out: labels.db (every label, with provenance), one folder per "
            "iteration, report.md and the final committee model.mlff. Run the same command "
            "again after a crash or kill to continue: no label is lost or computed twice."
        ),
    )
    parser.add_argument("config", help="active-learning config (YAML)")
    parser.add_argument("--out", required=True, help="output folder (created, or resumed)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run or resume the loop and print where the model went."""
    from mlff.active.loop import learn

    result = learn(args.config, args.out, progress=not args.quiet)
    print(f"model: {result.model_path}")
    return 0
