"""A model file and a labelled data file for the command-line tests, made once per session."""

from __future__ import annotations

import ase.io
import pytest

from mlff.models import save_model
from tests import helpers

# H, C, O and their E0s (eV) from the ethanol set's isolated_atoms.xyz
SPECIES = (1, 6, 8)
E0S = (-13.568422383046626, -1025.2770951782686, -2035.5709809589698)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """A random-init tiny PaiNN over H, C, O (no training), saved as a .mlff file."""
    potential = helpers.build_potential("painn", species=SPECIES, e0s=E0S)
    return save_model(potential, tmp_path_factory.mktemp("model") / "tiny.mlff")


@pytest.fixture(scope="session")
def data_file(tmp_path_factory):
    """Four labelled molecules in two config_types, as extxyz."""
    frames = []
    for i, atoms in enumerate([helpers.ethanol(seed=1), helpers.ethanol(seed=2),
                               helpers.water(seed=3), helpers.water(seed=4)]):
        frame = helpers.with_random_labels(atoms, seed=i)
        frame.info["config_type"] = "ethanol" if len(atoms) == 9 else "water"
        frames.append(frame)
    path = tmp_path_factory.mktemp("data") / "molecules.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path
