"""Deployment still works after torch_geometric (which sevenn imports) is imported: it
replaces torch.index_select and torch.select with Python functions TorchScript cannot
compile, so mlff's code must not call those functions."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_models_script_after_torch_geometric_is_imported():
    pytest.importorskip("torch_geometric")
    code = (
        "import torch_geometric\n"
        "from mlff.calculators.lammps.deploy import script_model\n"
        "from tests import helpers\n"
        "for name in ('nequip', 'mace', 'sevennet'):\n"
        "    script_model(helpers.build_potential(name))\n"
        "print('scripted')\n"
    )
    # a fresh process: the patch is global and permanent in the process that imports it
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and "scripted" in result.stdout, result.stderr[-3000:]
