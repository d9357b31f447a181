"""The weight averages of a run: EMA while training, SWA from stage two with ``swa``.

Which weights are validated, checkpointed as best and saved at the end follows from
them: the SWA average once it runs, else the EMA, else the trained weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlff.models.potential import Potential
from mlff.train.averaging import WeightAverage


class Averages:
    """EMA (``training.ema_decay``) and SWA (``stage_two.swa``) of the trained weights."""

    def __init__(self, potential: Potential, ema: WeightAverage | None) -> None:
        self.potential = potential
        self.ema = ema
        self.swa: WeightAverage | None = None

    def step_update(self) -> Callable[[Potential], None] | None:
        """What to call after each optimizer step of the coming epoch (the EMA update; no
        call once SWA averages instead), or None."""
        return self.ema.update_parameters if self.ema is not None and self.swa is None else None

    def start_swa(self) -> None:
        """Average the weights of every epoch from now on (stage two with ``swa``)."""
        self.swa = WeightAverage(self.potential)

    def epoch_end(self) -> None:
        """Fold the weights of the finished epoch into the SWA average (if it runs)."""
        if self.swa is not None:
            self.swa.update_parameters(self.potential)

    @property
    def evaluation_model(self) -> Potential:
        """The SWA weights when SWA runs, else the EMA weights when EMA is on, else the
        trained weights."""
        if self.swa is not None:
            return self.swa.module
        return self.ema.module if self.ema is not None else self.potential

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint entries ``ema`` and ``swa`` (None when off)."""
        return {"ema": self.ema.state_dict() if self.ema is not None else None,
                "swa": self.swa.state_dict() if self.swa is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the averages from a checkpoint (SWA only if stage two started it)."""
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.swa is not None:
            self.swa.load_state_dict(state["swa"])
