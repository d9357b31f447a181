"""The terminal output of mlff: text printed as given.

File names, frame slices (``cu.xyz:-1:``), lists and error messages are text, never rich
markup or emoji codes; styles come from :class:`rich.text.Text` objects instead.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console


def plain_console(**kwargs: Any) -> Console:
    """A rich Console that parses no markup or emoji codes and highlights nothing."""
    kwargs.setdefault("markup", False)
    kwargs.setdefault("emoji", False)
    kwargs.setdefault("highlight", False)
    return Console(**kwargs)
