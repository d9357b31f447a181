"""Reference labellers ("oracles") behind one interface, run by an executor.

- :class:`OracleConfig` / :func:`load_oracle`: EMT, xTB (tblite), DFT (PySCF) or any
  ASE calculator, from a YAML file or a dict;
- :class:`Oracle`: ``name``, ``settings``, ``make_calculator()``, ``label(atoms)``;
- :class:`LabelResult`: ``ok``, ``atoms`` (with energy eV, forces eV/Å, stress eV/Å³),
  ``reason``, ``wall_time`` (s);
- :func:`make_executor` / :class:`ExecutorConfig`: a local process pool or Dask;
- :func:`label_many`: label structures on an executor, results handed back as they finish;
- :func:`run_reference_md`: ab initio MD with the oracle, keeping labelled frames.
"""

from mlff.oracles.compute import LabelResult
from mlff.oracles.config import OracleConfig, load_oracle_config
from mlff.oracles.executors import ExecutorConfig, make_executor
from mlff.oracles.generate import run_reference_md
from mlff.oracles.label import label_many
from mlff.oracles.oracle import Oracle, load_oracle

__all__ = [
    "ExecutorConfig",
    "LabelResult",
    "Oracle",
    "OracleConfig",
    "label_many",
    "load_oracle",
    "load_oracle_config",
    "make_executor",
    "run_reference_md",
]
