"""Run mlff models inside simulation engines (ASE now; LAMMPS export later)."""

from mlff.calculators.ase import MLFFCalculator

__all__ = ["MLFFCalculator"]
