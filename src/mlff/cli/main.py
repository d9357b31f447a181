"""Entry point of the ``mlff`` command.

Each subcommand lives in ``mlff/cli/<name>.py`` and defines ``add_parser(subparsers)``,
which registers its arguments and sets ``func`` to a function taking the parsed
arguments and returning an exit status. Errors a user can cause (:class:`MLFFError`) are
printed as one message without a traceback, with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rich.text import Text

from mlff._version import __version__
from mlff.console import plain_console
from mlff.errors import MLFFError
from mlff.interface import command_line

SUBCOMMANDS = ("train", "evaluate", "md", "info", "data", "export", "label", "generate", "learn",
               "validate", "deploy", "ipi", "oracle", "import")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mlff",
        description="Machine-learned force fields: train, evaluate and run models.",
        epilog="Run `mlff COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"mlff {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = "import_" if name == "import" else name  # `import` is a Python keyword
        importlib.import_module(f"mlff.cli.{module}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with command_line():  # messages name --options, not Python arguments
            return int(args.func(args) or 0)
    except MLFFError as exc:
        # soft_wrap: never break a long path across lines; the message is plain text
        # (brackets of a list, `cu.xyz:-1:` are not markup or emoji codes)
        plain_console(stderr=True, soft_wrap=True).print(
            Text.assemble(("error:", "bold red"), " ", str(exc))
        )
        return 2
    except KeyboardInterrupt:
        plain_console(stderr=True).print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
