"""A resumable step of the active-learning loop: skipped when its output exists, else
computed and written atomically (a temporary file, then a rename), so that a run killed
at any moment and started again finds either the whole output or none of it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import ase.io
from ase import Atoms

T = TypeVar("T")


@dataclass(frozen=True)
class Step(Generic[T]):
    """The output file of a step and how its value is written to and read from it.

    Attributes:
        path: the output; its existence means the step is done.
        write: writes a value to a (temporary) path.
        read: reads the value back.
    """

    path: Path
    write: Callable[[Path, T], None]
    read: Callable[[Path], T]

    @staticmethod
    def frames(path: Path) -> Step[list[Atoms]]:
        """A step whose output is structures, in extended XYZ."""
        return Step(path, _write_frames, _read_frames)

    @staticmethod
    def json(path: Path) -> Step[Any]:
        """A step whose output is JSON data."""
        return Step(path, _write_json, lambda p: json.loads(p.read_text()))

    def done(self) -> bool:
        """Whether the output exists (a complete one: it is written atomically)."""
        return self.path.exists()

    def load(self) -> T:
        """The stored value."""
        return self.read(self.path)

    def save(self, value: T) -> T:
        """Write ``value`` atomically; returns it."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.write(tmp, value)
        os.replace(tmp, self.path)
        return value

    def run(self, compute: Callable[[], T]) -> T:
        """The stored value when the step is done; else ``compute()``, saved."""
        if self.done():
            return self.load()
        return self.save(compute())


def _write_frames(path: Path, frames: list[Atoms]) -> None:
    ase.io.write(path, frames, format="extxyz")


def _read_frames(path: Path) -> list[Atoms]:
    return ase.io.read(path, ":", format="extxyz") if path.stat().st_size else []


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))
