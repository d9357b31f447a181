"""The uncertainty watchdog: stop MD under a committee when the model starts guessing.

A committee model's calculator reports ``max_forces_std`` (eV/Å, the largest per-atom
force disagreement). Past a trust level the trajectory samples the model's extrapolation,
not physics; continuing only produces garbage frames. Attached to an ASE integrator, the
watchdog raises :class:`UncertaintyExceeded` at the first checked step above the level.
"""

from __future__ import annotations

from ase import Atoms

from mlff.errors import SimulationError


class UncertaintyExceeded(SimulationError):
    """The committee's force disagreement passed the watchdog's level."""

    def __init__(self, step: int, value: float, threshold: float) -> None:
        super().__init__(
            f"step {step}: the committee's max force disagreement {value:.3f} eV/Å passed the "
            f"trust level {threshold:.3f} eV/Å; the model is extrapolating here, so the run "
            "stopped. Label structures from this region and retrain, or raise the level."
        )
        self.step, self.value, self.threshold = step, value, threshold


class UncertaintyWatchdog:
    """Observer for ``dyn.attach(watchdog, interval=n)``.

    Args:
        atoms: the simulated atoms; their calculator must be a committee's MLFFCalculator.
        threshold: the trust level, eV/Å.
        dyn: the integrator (for the step number in the message), optional.

    Raises:
        SimulationError: at construction, when the calculator gives no disagreement.
    """

    def __init__(self, atoms: Atoms, threshold: float, dyn=None) -> None:
        if "max_forces_std" not in getattr(atoms.calc, "implemented_properties", ()):
            raise SimulationError(
                "the uncertainty watchdog needs a committee model (a .mlff file trained with "
                "committee: K); this calculator reports no force disagreement."
            )
        self.atoms, self.threshold, self.dyn = atoms, float(threshold), dyn
        self.history: list[float] = []

    def __call__(self) -> None:
        value = float(self.atoms.calc.get_property("max_forces_std", self.atoms))
        self.history.append(value)
        if value > self.threshold:
            step = self.dyn.nsteps if self.dyn is not None else len(self.history) - 1
            raise UncertaintyExceeded(step, value, self.threshold)
