"""Imported mace-torch models against stored mace-torch results (no mace-torch needed).

``golden/mace`` (made by ``make_mace_golden.py``) holds mace-torch's float64 energies,
forces and stresses on the test structures, a small mace-torch model as ``.model`` and
as state-dict export, and larger models already imported to ``.mlff``: a change to the
import or to mlff's MACE that moves any of them fails here. Also: what the readers
refuse, and that reading a file never runs code from it.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import sys
import zipfile
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from mlff.calculators.ase import MLFFCalculator
from mlff.errors import MLFFError, ModelFileError
from mlff.imports.mace import load_mace
from mlff.uq.io import load_model
from tests import helpers
from tests.imports import mace_cases

GOLDEN = Path(__file__).parent / "golden" / "mace"
REFERENCE = json.loads((GOLDEN / "reference.json").read_text())["results"]
STRUCTURES = ase.io.read(GOLDEN / "structures.extxyz", ":")
ENERGY_TOL, FORCE_TOL, STRESS_TOL = 1e-6, 1e-5, 1e-6  # eV/atom, eV/Å, eV/Å³


def worst_differences(potential, results) -> tuple[float, float, float]:
    calc = MLFFCalculator(potential, dtype="float64")
    worst = [0.0, 0.0, 0.0, 0.0]
    for atoms, reference in zip(STRUCTURES, results, strict=True):
        atoms = atoms.copy()
        atoms.calc = calc
        stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else np.zeros((3, 3))
        worst[0] = max(worst[0], abs(atoms.get_potential_energy() - reference["energy"]) / len(atoms))
        worst[1] = max(worst[1], np.abs(atoms.get_forces() - np.array(reference["forces"])).max())
        worst[3] = max(worst[3], np.abs(np.array(reference["forces"])).max())
        worst[2] = max(worst[2], np.abs(stress - np.array(reference["stress"])).max())
    # relative: the forces of some random-weight models are small (1e-3 eV/Å)
    assert worst[1] <= 1e-9 * worst[3] + 1e-12, f"forces differ by {worst[1]:.1e} of {worst[3]:.1e}"
    return worst[0], worst[1], worst[2]


@pytest.mark.parametrize("kind", ["pt", "model"])
def test_shipped_mace_torch_file_imports_exactly(kind):
    potential, provenance = load_mace(GOLDEN / f"tiny_zbl.{kind}")
    if kind == "model":  # read from the pickled attributes
        from mlff.imports.mace import read_mace_file

        assert read_mace_file(GOLDEN / "tiny_zbl.model")[0]["hidden_irreps"] == "4x0e+4x1o"
    assert potential.hyperparameters["zbl"] and potential.hyperparameters["max_ell"] == 1
    assert provenance["model_class"] == "ScaleShiftMACE"
    energy, forces, stress = worst_differences(potential, REFERENCE["tiny_zbl/Default"])
    assert energy < ENERGY_TOL and forces < FORCE_TOL and stress < STRESS_TOL, (energy, forces, stress)


@pytest.mark.parametrize("name", mace_cases.GOLDEN_IMPORTS)
def test_imported_model_files_still_equal_mace_torch(name):
    potential = load_model(GOLDEN / f"{name}.mlff", dtype="float64")
    assert potential.metadata["provenance"]["code"] == "mace-torch"
    energy, forces, stress = worst_differences(potential, REFERENCE[f"{name}/Default"])
    assert energy < ENERGY_TOL and forces < FORCE_TOL and stress < STRESS_TOL, (energy, forces, stress)


class _Payload:
    """Unpickling this would run a shell command (what a hostile .model file could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.model"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(ModelFileError, match="not a pickled mace-torch model|not a MACE"):
        load_mace(path)
    torch.save(_Payload(marker), path)
    with pytest.raises(ModelFileError, match="not a pickled mace-torch model"):
        load_mace(path)
    assert not marker.exists()


def test_other_modules_and_files_are_refused_clearly(tmp_path):
    module = tmp_path / "linear.model"
    torch.save(torch.nn.Linear(2, 2), module)
    with pytest.raises(ModelFileError, match="not a pickled mace-torch model.*torch.nn"):
        load_mace(module)
    bare = tmp_path / "bare.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), bare)
    with pytest.raises(ModelFileError, match="without 'state_dict'.*Export it with mace-torch"):
        load_mace(bare)
    no_hyper = tmp_path / "nohyper.pt"
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict()}, no_hyper)
    with pytest.raises(ModelFileError, match="without 'mace_hyperparameters'"):
        load_mace(no_hyper)
    text = tmp_path / "notes.model"
    text.write_text("not a model")
    with pytest.raises(ModelFileError, match="notes.model"):
        load_mace(text)
    truncated = tmp_path / "cut.model"
    truncated.write_bytes((GOLDEN / "tiny_zbl.model").read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="cut.model"):
        load_mace(truncated)
    with pytest.raises(ModelFileError, match="no such file"):
        load_mace(tmp_path / "missing.model")


def test_unsupported_options_are_named(tmp_path):
    payload = torch.load(GOLDEN / "tiny_zbl.pt", weights_only=True)
    payload["mace_hyperparameters"]["interaction_cls"] = "RealInteractionBlock"  # mace-torch 0.2
    path = tmp_path / "old.pt"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="old.pt: interaction block RealInteractionBlock"):
        load_mace(path)
    payload = torch.load(GOLDEN / "tiny_zbl.pt", weights_only=True)
    payload["mace_hyperparameters"]["hidden_irreps"] = "4x0e+2x1o"  # mace_run_train refuses it
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="hidden irreps 4x0e\\+2x1o: mlff's MACE needs equal"):
        load_mace(path)
    payload = torch.load(GOLDEN / "tiny_zbl.pt", weights_only=True)
    payload["mace_hyperparameters"]["model_class"] = "AtomicDipolesMACE"
    torch.save(payload, path)
    with pytest.raises(MLFFError, match="AtomicDipolesMACE; mlff imports MACE and ScaleShiftMACE"):
        load_mace(path)


def test_pickled_module_is_read_without_importing_mace():
    """The reader rebuilds tensors and attributes from the archive alone."""
    from mlff.imports.mace_pickle import module_state_dict, read_pickled_module

    root = read_pickled_module(GOLDEN / "tiny_zbl.model")
    assert root.qualname == "mace.modules.models.ScaleShiftMACE"
    state = module_state_dict(root)
    exported = torch.load(GOLDEN / "tiny_zbl.pt", weights_only=True)["state_dict"]
    assert state.keys() == exported.keys()
    assert all(torch.equal(state[k], exported[k]) for k in state)
    with zipfile.ZipFile(GOLDEN / "tiny_zbl.model") as archive:
        data = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    # the pickle names mace-torch's classes, which an ordinary unpickler would import
    names = {str(arg) for op, arg, _ in pickletools.genops(io.BytesIO(data)) if op.name == "GLOBAL"}
    assert any(name.startswith("mace.modules") for name in names)
    assert "mace" not in sys.modules


@pytest.mark.parametrize("kind", ["pt", "model"])
def test_torch_load_is_only_called_with_weights_only(monkeypatch, kind):
    """No path falls back to torch's unrestricted unpickler."""
    calls = []
    original = torch.load

    def recording(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    potential, _ = load_mace(GOLDEN / f"tiny_zbl.{kind}")
    assert potential.species == mace_cases.ELEMENTS
    assert calls and all(flag is True for flag in calls)


@pytest.mark.parametrize("name", ["mp_like", "density_soft"])
def test_imported_model_deploys_to_lammps_unchanged(name):
    """TorchScript for LAMMPS keeps ZBL and the distance transform (they need the elements)."""
    from mlff.calculators.lammps import deploy

    potential = load_model(GOLDEN / f"{name}.mlff", dtype="float64")
    scripted = deploy.script_model(potential)
    atoms = STRUCTURES[0].copy()  # rattled fcc Cu: neighbours inside the ZBL range
    got = deploy.evaluate(scripted, atoms)
    atoms.calc = MLFFCalculator(potential)
    assert got["energy"][0] == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(got["forces"][0], atoms.get_forces(), rtol=0, atol=1e-10)
    zbl = potential.pair_terms[0]
    assert zbl.factor.item() == pytest.approx(potential.scale.item())  # ScaleShiftMACE's scaling


def test_every_block_kind_compiles_for_lammps():
    """TorchScript compiles each interaction block (deploy needs it for imported models)."""
    from mlff.calculators.lammps import deploy

    for kind in ("plain", "density", "density_residual", "att_residual", "nonlinear"):
        potential = helpers.build_potential("mace", interaction=kind, zbl=True,
                                            distance_transform="agnesi", apply_cutoff=False,
                                            max_L=1, max_ell=2, use_so3=kind == "nonlinear")
        scripted = deploy.script_model(potential)
        atoms = STRUCTURES[0].copy()
        got = deploy.evaluate(scripted, atoms)
        atoms.calc = MLFFCalculator(potential)
        np.testing.assert_allclose(got["forces"][0], atoms.get_forces(), rtol=0, atol=1e-10)


def test_torchscript_files_are_refused_without_loading_them(tmp_path, monkeypatch):
    """mace-torch's compiled models: torch.jit.load would compile the file's code."""
    path = tmp_path / "compiled.model"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)

    def refuse(*_args, **_kwargs):
        raise AssertionError("torch.jit.load called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    with pytest.raises(ModelFileError, match="TorchScript.*Import the .model file"):
        load_mace(path)
