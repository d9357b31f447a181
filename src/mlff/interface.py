"""Whether mlff runs from the ``mlff`` command or from Python, for messages that name an input.

The same function serves ``mlff train --resume`` and ``mlff.train(..., resume=True)``; an
error must name what the user typed. :func:`command_line` marks a call made by the
command line (the ``mlff`` entry point wraps every subcommand in it) and :func:`argument`
picks the spelling.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_FROM_COMMAND_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mlff_from_command_line", default=False
)


@contextmanager
def command_line() -> Iterator[None]:
    """Within this block, :func:`argument` names command-line options."""
    token = _FROM_COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _FROM_COMMAND_LINE.reset(token)


def argument(option: str, parameter: str) -> str:
    """``option`` (``--resume``) on the command line, else ``parameter`` (``resume=True``)."""
    return option if _FROM_COMMAND_LINE.get() else parameter
