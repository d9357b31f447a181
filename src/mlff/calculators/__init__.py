"""Run mlff models inside simulation engines.

- :mod:`mlff.calculators.ase`: the ASE calculator.
- :mod:`mlff.calculators.lammps`: deployment to LAMMPS (``pair_style mlff``, MPI), its
  plugin build, and the ``fix external`` fallback (docs/lammps.md).
- :mod:`mlff.calculators.ipi`: i-PI (path-integral MD) through ASE's socket client.
"""

from mlff.calculators.ase import MLFFCalculator

__all__ = ["MLFFCalculator"]
