"""What a run reports per epoch: ``log.jsonl`` and the console (a live bar on a terminal,
and a line for every better and every tenth epoch)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlff.train.callback import Callback
from mlff.train.run import Run

if TYPE_CHECKING:
    from mlff.train.trainer import Trainer


class JsonlLog(Callback):
    """Appends each epoch's record as one JSON line to ``path`` (main process only)."""

    def __init__(self, path: Path, is_main: bool) -> None:
        self.path = path
        self.is_main = is_main

    def epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Write the record."""
        if self.is_main:
            with open(self.path, "a") as log:
                log.write(json.dumps(record) + "\n")


class ConsoleLog(Callback):
    """The progress bar (on a terminal) and the epoch lines; a context manager around
    the loop."""

    def __init__(self, run: Run, total: int, completed: int) -> None:
        columns = (TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(),
                   TimeElapsedColumn(), TextColumn("{task.description}"))
        self.bar = Progress(*columns, console=run.console, disable=not run.show_bar)
        self.total, self.completed = total, completed

    def __enter__(self) -> ConsoleLog:
        self.bar.__enter__()
        self.task = self.bar.add_task("", total=self.total, completed=self.completed)
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Advance the bar; print a line when the epoch was better, or every tenth."""
        valid, improved = record["valid"], record["best"]
        summary = (f"loss {valid['loss']:.3g}  "
                   f"E {valid.get('energy_mae_meV_per_atom', math.nan):.2f} meV/atom  "
                   f"F {valid.get('forces_mae_meV_per_A', math.nan):.1f} meV/Å  "
                   f"lr {record['lr']:.1e}")
        self.bar.update(self.task, advance=1, description=summary)
        if improved or trainer.epoch % 10 == 0:
            mark = "  *" if improved else ""
            self.bar.console.print(f"epoch {trainer.epoch:4d}  {summary}{mark}", highlight=False)
