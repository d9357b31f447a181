"""``mlff train CONFIG.yaml [--out DIR] [--resume]``: train a model from a YAML config."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from mlff.errors import ConfigError


def add_parser(subparsers) -> None:
    """Register ``mlff train``."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML config",
        description=(
            "Train a model as the YAML config says (see examples/ethanol/painn.yaml). Writes "
            "DIR/model.mlff (the best model by validation loss), DIR/best.ckpt, DIR/last.ckpt "
            "(for --resume), the resolved DIR/config.yaml, DIR/log.jsonl (one line per epoch) "
            "and DIR/metrics.json. With `committee: K` in the config: one such run per member "
            "in DIR/member_K/, and DIR/model.mlff holds the calibrated committee "
            "(DIR/calibration.json, DIR/calibration.png)."
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
    parser.add_argument(
        "--nproc", type=int, default=1, metavar="N",
        help="train with N processes on this node (DistributedDataParallel through torchrun: "
             "gloo on CPU, NCCL on CUDA); for several nodes call torchrun yourself, see "
             "docs/distributed.md",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and print where the model went."""
    from mlff import train

    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: give a number of processes >= 1.")
    if args.nproc > 1:
        from mlff.train.config import load_config

        if load_config(Path(args.config), args.overrides).committee is not None:
            raise ConfigError(
                "--nproc > 1 (DDP) cannot train a committee: the members already train in "
                "parallel processes (committee.processes)."
            )
        return _launch_torchrun(args)

    result = train(Path(args.config), out_dir=args.out, resume=args.resume,
                   progress=not args.quiet, overrides=args.overrides)
    print(f"model: {result.model_path}")  # the one place the path is printed
    return 0


def _launch_torchrun(args: argparse.Namespace) -> int:
    """Run this same command in ``args.nproc`` processes under torchrun (one node)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={args.nproc}", "-m", "mlff", "train", str(args.config),
    ]
    if args.out is not None:
        command += ["--out", str(args.out)]
    if args.resume:
        command.append("--resume")
    for item in args.overrides:
        command += ["--set", item]
    if args.quiet:
        command.append("--quiet")
    return subprocess.call(command)
