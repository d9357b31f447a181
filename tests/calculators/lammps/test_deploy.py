"""Deployment for LAMMPS: TorchScript equal to the Potential, metadata, the written folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.lammps import deploy as D
from mlff.errors import ConfigError, ModelFileError
from mlff.models import save_model
from tests import helpers
from tests.calculators.lammps.conftest import tiny_potential

LAYERS = {"schnet": 2, "painn": 2, "nequip": 2, "mace": 2, "allegro": 1, "deeppot": 1,
          "sevennet": 2}


@pytest.mark.parametrize("architecture", sorted(helpers.TINY_HYPERPARAMETERS))
def test_every_architecture_scripts_and_equals_the_potential(architecture):
    potential = tiny_potential(architecture)
    scripted = D.script_model(potential)
    assert scripted.num_message_passing == LAYERS[architecture]
    assert scripted.interaction_range == pytest.approx(LAYERS[architecture] * 4.0)
    assert list(scripted.symbols) == ["H", "C", "O", "Cu"] and scripted.dtype == "float64"
    for atoms in (helpers.copper().repeat((2, 2, 2)), helpers.ethanol()):
        got = D.evaluate(scripted, atoms)
        atoms.calc = MLFFCalculator(potential)
        assert got["energy"][0] == pytest.approx(atoms.get_potential_energy(), rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(got["forces"][0], atoms.get_forces(), rtol=0, atol=1e-11)
        np.testing.assert_allclose(got["energies"][0], atoms.get_potential_energies(), atol=1e-11)
        if atoms.pbc.all():
            stress = -got["virial"][0] / atoms.get_volume()
            np.testing.assert_allclose(stress, atoms.get_stress(voigt=False), atol=1e-12)


def test_sevennet_with_the_nequip_self_connection_scripts():
    # the two self-connections take different arguments: TorchScript compiles only the one used
    potential = helpers.build_potential("sevennet", self_connection="nequip")
    assert D.check_against_potential(D.script_model(potential), potential) < 1e-12


@pytest.mark.parametrize("architecture", ["mace", "nequip", "painn"])
def test_chunked_evaluation_equals_whole(architecture):
    """Chunks of local atoms on their receptive-field subgraphs give the whole result;
    a halo one hop too thin does not (the comparison can fail)."""
    scripted = D.script_model(tiny_potential(architecture))
    assert scripted.memory_per_edge > 0
    atoms = helpers.copper().repeat((3, 2, 2))
    atoms.rattle(0.05, seed=2)
    whole = D.evaluate(scripted, atoms)
    scripted.max_atoms_per_chunk = 7
    chunked = D.evaluate(scripted, atoms)
    for key in ("energy", "energies", "forces", "virial"):
        np.testing.assert_allclose(chunked[key], whole[key], rtol=0, atol=1e-11)
    scripted.num_message_passing -= 1
    thin = D.evaluate(scripted, atoms)
    assert np.abs(thin["forces"] - whole["forces"]).max() > 1e-6


def test_float32_deployment():
    potential = tiny_potential("nequip")
    scripted = D.script_model(potential, dtype="float32")
    assert scripted.dtype == "float32"
    assert D.check_against_potential(scripted, potential.to(torch.float32)) < 1e-5


def test_committee_deployment_returns_every_member():
    from mlff.uq.committee import Committee

    committee = Committee([tiny_potential("painn", seed=s) for s in (0, 1)])
    scripted = D.script_model(committee)
    assert scripted.committee_size == 2
    atoms = helpers.copper()
    got = D.evaluate(scripted, atoms)
    for k, member in enumerate(committee.members):
        atoms.calc = MLFFCalculator(member)
        np.testing.assert_allclose(got["forces"][k], atoms.get_forces(), atol=1e-11)


def test_check_catches_a_model_that_differs():
    scripted = D.script_model(tiny_potential("painn", seed=0))
    with pytest.raises(ModelFileError, match="differs from the original"):
        D.check_against_potential(scripted, tiny_potential("painn", seed=1))


def test_deploy_writes_model_metadata_and_example(tmp_path):
    potential = tiny_potential("mace")
    path = save_model(potential, tmp_path / "model.mlff")
    result = D.deploy(path, tmp_path / "out", build=False, structure=helpers.copper().repeat(2),
                      format="torchscript")
    assert result.plugin is None and result.check_error < 1e-12
    metadata = json.loads(result.metadata.read_text())
    assert metadata == D.read_deployed_metadata(result.model)
    assert metadata["symbols"] == ["H", "C", "O", "Cu"] and metadata["cutoff"] == 4.0
    assert metadata["num_message_passing"] == 2 and metadata["interaction_range"] == 8.0
    assert metadata["source"]["architecture"] == "mace"
    text = result.input.read_text()
    assert "pair_style      mlff" in text and "pair_coeff      * * model.pt H C O Cu" in text
    assert "boundary        p p p" in text and "read_data       data.lammps" in text
    data = result.data.read_text()
    assert "4 atom types" in data and "63.54" in data  # types in the model's order, Cu = 4
    loaded = torch.jit.load(str(result.model))
    assert loaded.cutoff == 4.0 and loaded.committee_size == 1


def test_deploy_without_any_structure_refuses_before_writing(tmp_path):
    potential = helpers.build_potential("painn", species=[1, 8], e0s=[-1.0, -2.0])
    with pytest.raises(ConfigError, match="no starting structure.*--structure FILE"):
        D.deploy(potential, tmp_path / "out", build=False, format="torchscript")  # bulk("H") is not a crystal ASE knows
    assert not (tmp_path / "out").exists()


def _ethanol_model(tmp_path):
    """A tiny model file over H, C, O, Cu recording an ethanol frame as its training structure."""
    from pathlib import Path

    import ase.io

    from mlff.data.example import example_record

    examples = Path(__file__).resolve().parents[3] / "examples"
    atoms = ase.io.read(examples / "ethanol" / "train.xyz", index=0)
    potential = tiny_potential("painn")
    potential.metadata = {"training": {"example_structure": example_record(
        [helpers.graph_of(atoms, 4.0)])}}
    return save_model(potential, tmp_path / "ethanol.mlff")


def test_molecular_model_deploys_a_molecule_in_a_box(tmp_path):
    result = D.deploy(_ethanol_model(tmp_path), tmp_path / "out", build=False,
                      format="torchscript")
    assert "9 atoms" in result.data.read_text()
    assert "boundary        s s s" in result.input.read_text()


def test_deployed_molecular_example_runs_in_lmp(tmp_path, plugin):
    from mlff.calculators.lammps.runtime import run_lammps

    result = D.deploy(_ethanol_model(tmp_path), tmp_path / "out", format="torchscript")
    run = run_lammps("in.lammps", cwd=result.directory, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Loop time" in run.stdout and "9 atoms" in run.stdout


def test_recorded_crystal_is_repeated_to_twice_the_cutoff():
    from mlff.data.example import example_record

    potential = tiny_potential("painn")  # cutoff 4 Å
    cell = helpers.copper(strain=False)  # 4 atoms, 3.6 Å
    potential.metadata = {"training": {"example_structure": example_record(
        [helpers.graph_of(cell, 4.0)])}}
    structure = D.default_structure(potential)
    assert len(structure) == 4 * 27 and structure.pbc.all()


def test_structure_with_an_unknown_element_is_refused(tmp_path):
    from ase.build import bulk

    with pytest.raises(ConfigError, match="Fe, which the model does not know"):
        D.deploy(tiny_potential("painn"), tmp_path, build=False, structure=bulk("Fe"),
                 format="torchscript")


def test_read_deployed_metadata_errors(tmp_path):
    with pytest.raises(ModelFileError, match="no such deployed model"):
        D.read_deployed_metadata(tmp_path / "none.pt")
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(other))
    with pytest.raises(ModelFileError, match="not one written by `mlff deploy`"):
        D.read_deployed_metadata(other)
