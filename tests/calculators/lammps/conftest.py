"""The plugin (built once, cached across sessions) and deployed tiny models for the tests."""

from __future__ import annotations

import pytest

from mlff.calculators.lammps import build
from mlff.calculators.lammps.deploy import deployed_metadata, save_deployed, script_model
from tests import helpers

SYMBOLS = ["H", "C", "O", "Cu"]  # tests.helpers.SPECIES


@pytest.fixture(scope="session")
def plugin():
    """The pair_style mlff plugin for the installed torch and lammps (built if missing)."""
    try:
        return build.build_plugin()
    except build.PluginBuildError as exc:
        if "not found" in str(exc):  # no compiler or CMake: the fallback is tested elsewhere
            pytest.skip(str(exc))
        raise


def tiny_potential(architecture: str, dtype=None, seed: int = 0):
    """A tiny random Potential over H, C, O, Cu (cutoff 4 Å) with forces of ~1 eV/Å."""
    import torch

    potential = helpers.build_potential(architecture, scale=2.0, shift=0.1, seed=seed)
    return potential.to(dtype or torch.float64)


@pytest.fixture(scope="session")
def deployed(tmp_path_factory, plugin):
    """``deployed(architecture, dtype="float64")`` -> (model.pt path, the Potential), cached."""
    cache = {}

    def make(architecture: str, dtype: str = "float64"):
        if (architecture, dtype) not in cache:
            potential = tiny_potential(architecture)
            scripted = script_model(potential, dtype=dtype)
            path = tmp_path_factory.mktemp(f"{architecture}-{dtype}") / "model.pt"
            save_deployed(scripted, path, deployed_metadata(scripted, {}))
            cache[architecture, dtype] = (path, potential)
        return cache[architecture, dtype]

    return make
