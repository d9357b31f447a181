"""``mlff train CONFIG.yaml [--out DIR] [--resume]``: train a model from a YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    """Register ``mlff train``."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML config",
        description=(
            "Train a model as the YAML config says (see examples/ethanol/painn.yaml). Writes "
            "DIR/model.mlff (the best model by validation loss), DIR/best.ckpt, DIR/last.ckpt "
            "(for --resume), the resolved DIR/config.yaml, DIR/log.jsonl (one line per epoch) "
            "and DIR/metrics.json."
        ),
    )
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<config name>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.max_minutes=5 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and print where the model went."""
    from mlff.train.trainer import train

    result = train(Path(args.config), out_dir=args.out, resume=args.resume,
                   progress=not args.quiet, overrides=args.overrides)
    print(result.model_path)
    return 0
