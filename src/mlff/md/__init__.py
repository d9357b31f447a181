"""Molecular dynamics with ASE integrators (NVE, NVT, NPT) and their outputs."""

from mlff.md.io import read_start_structure
from mlff.md.run import ENSEMBLES, THERMOSTATS, MDSummary, run_md

__all__ = ["ENSEMBLES", "THERMOSTATS", "MDSummary", "read_start_structure", "run_md"]
