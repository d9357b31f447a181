"""Imported SevenNet models equal sevenn's own (float64 and its float32 calculator).

References: sevenn's network in float64 (:mod:`tests.imports.sevenn_reference`), sevenn's
``SevenNetCalculator`` (float32 only), and golden files of sevenn's float64 results
(``golden/sevennet-*.json``, written by ``python -m tests.imports.test_sevennet``), which
need only the checkpoints, not sevenn's code.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlff.errors import MLFFError
from tests.imports.structures import large_cell, small_structures

GOLDEN = Path(__file__).resolve().parent / "golden"
HAVE_SEVENN_CODE = all(importlib.util.find_spec(m) is not None
                       for m in ("sevenn", "torch_geometric"))
needs_sevenn = pytest.mark.skipif(not HAVE_SEVENN_CODE, reason="sevenn is not installed")
needs_checkpoints = pytest.mark.skipif(
    importlib.util.find_spec("sevenn") is None,
    reason="the sevenn package (with its checkpoints) is not installed")

# tolerances against sevenn in float64, and against its float32 calculator
E_ATOM, FORCE, STRESS = 1e-6, 1e-5, 1e-6
E_ATOM_F32, FORCE_F32 = 2e-5, 1e-3

# every structure for SevenNet-0; a few for the other variants
VARIANTS = {
    ("sevennet-0", None): list(small_structures()),
    ("sevennet-0-22may2024", None): ["CuNiPdAu-triclinic", "Pt111-slab", "ethanol-molecule"],
    ("sevennet-l3i5", None): ["NaCl-rocksalt", "Al-vacancy", "ethanol-molecule"],
    ("sevennet-mf-0", "PBE"): ["CuNiPdAu-triclinic", "Si-diamond"],
    ("sevennet-mf-0", "R2SCAN"): ["Pt111-slab", "Fe-bcc"],
}
_CACHE: dict = {}


def imported(name: str, head: str | None = None):
    """The imported model (float64), cached across the tests of this module."""
    from mlff.imports import import_model

    if (name, head) not in _CACHE:
        _CACHE[name, head] = import_model(name, head=head)
    return _CACHE[name, head]


def mlff_results(potential, atoms) -> dict:
    from mlff import MLFFCalculator

    atoms = atoms.copy()
    atoms.calc = MLFFCalculator(potential)
    periodic = atoms.pbc.all()
    return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
            "stress": atoms.get_stress() if periodic else None}


def assert_close(ours: dict, reference: dict, natoms: int, e_atom: float, force: float,
                 stress: float | None, where: str) -> None:
    de = abs(ours["energy"] - reference["energy"]) / natoms
    assert de < e_atom, f"{where}: energy differs by {de:.2e} eV/atom"
    df = np.abs(ours["forces"] - np.asarray(reference["forces"])).max()
    assert df < force, f"{where}: forces differ by {df:.2e} eV/Å"
    if stress is not None and ours.get("stress") is not None:
        ds = np.abs(ours["stress"] - np.asarray(reference["stress"])).max()
        assert ds < stress, f"{where}: stress differs by {ds:.2e} eV/Å³"


def _cases():
    return [pytest.param(name, head, id=f"{name}{'-' + head if head else ''}")
            for name, head in VARIANTS]


@needs_sevenn
@pytest.mark.parametrize(("name", "head"), _cases())
def test_equals_sevenn_float64(name, head):
    from mlff.imports.sevennet import pretrained_path
    from tests.imports import sevenn_reference

    reference = sevenn_reference.float64_model(pretrained_path(name), head)
    structures = small_structures()
    for key in VARIANTS[name, head]:
        atoms = structures[key]
        expected = sevenn_reference.evaluate(reference, atoms)
        ours = mlff_results(imported(name, head), atoms)
        assert_close(ours, expected, len(atoms), E_ATOM, FORCE, STRESS, f"{name} {key}")


@needs_sevenn
def test_equals_sevenn_float64_on_500_atoms():
    from mlff.imports.sevennet import pretrained_path
    from tests.imports import sevenn_reference

    atoms = large_cell()
    reference = sevenn_reference.float64_model(pretrained_path("sevennet-0"))
    expected = sevenn_reference.evaluate(reference, atoms)
    ours = mlff_results(imported("sevennet-0"), atoms)
    assert_close(ours, expected, len(atoms), E_ATOM, FORCE, STRESS, "sevennet-0 500 Cu")


@needs_sevenn
def test_equals_sevenn_calculator_float32():
    from sevenn.calculator import SevenNetCalculator

    from mlff.imports.sevennet import pretrained_path

    calculator = SevenNetCalculator(str(pretrained_path("sevennet-0")), device="cpu")
    structures = small_structures()
    for key in ("Cu-fcc", "CuNiPdAu-triclinic", "Pt111-slab", "ethanol-molecule"):
        atoms = structures[key].copy()
        atoms.calc = calculator
        expected = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        ours = mlff_results(imported("sevennet-0"), structures[key])
        assert_close(ours, expected, len(atoms), E_ATOM_F32, FORCE_F32, None, f"float32 {key}")


@needs_checkpoints
@pytest.mark.parametrize(("name", "head"), _cases())
def test_reproduces_golden_files(name, head):
    golden = json.loads((GOLDEN / _golden_name(name, head)).read_text())
    structures = small_structures()
    assert set(golden["structures"]) == set(VARIANTS[name, head])
    for key, expected in golden["structures"].items():
        atoms = structures[key]
        assert atoms.get_chemical_formula() == expected["formula"], "structures changed"
        ours = mlff_results(imported(name, head), atoms)
        assert_close(ours, expected, len(atoms), E_ATOM, FORCE, STRESS, f"golden {name} {key}")


@needs_checkpoints
def test_float32_import_and_file_round_trip(tmp_path):
    from mlff import MLFFCalculator, import_model, load_model

    path = import_model("sevennet-0", out=tmp_path / "m.mlff", dtype="float32")
    potential = load_model(path)
    assert potential.dtype == torch.float32
    assert potential.metadata["provenance"]["original_code"] == "sevenn"
    atoms = small_structures()["CuNiPdAu-triclinic"]
    reference = mlff_results(imported("sevennet-0"), atoms)
    atoms = atoms.copy()
    atoms.calc = MLFFCalculator(path)
    ours = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    assert_close(ours, reference, len(atoms), E_ATOM_F32, FORCE_F32, None, "float32 file")


@needs_checkpoints
def test_cli_import_and_info(tmp_path):
    from mlff.cli.main import main

    out = tmp_path / "mf.mlff"
    assert main(["import", "sevennet-mf-0", "--head", "pbe", "--out", str(out)]) == 0
    info = subprocess.run([sys.executable, "-m", "mlff", "info", str(out), "--json"],
                          capture_output=True, text=True, check=True).stdout
    metadata = json.loads(info)
    record = metadata["provenance"]
    assert record["fidelity"] == "PBE" and record["model"] == "sevennet-mf-0"
    assert len(record["sha256"]) == 64 and record["original_code_version"] == "0.13.0"
    assert "MIT" in record["weights_licence"]
    assert metadata["hyperparameters"]["modality"] == 1


@needs_checkpoints
@pytest.mark.parametrize(("name", "head", "message"), [
    ("sevennet-mf-0", None, "choose the fidelity with --head"),
    ("sevennet-mf-0", "HSE", "unknown fidelity"),
    ("sevennet-0", "PBE", "one fidelity only"),
    ("sevennet-9", None, "neither a file nor a known model name"),
])
def test_bad_requests_are_clear_errors(name, head, message):
    from mlff.imports import import_model

    with pytest.raises(MLFFError, match=message):
        import_model(name, head=head)


def test_foreign_code_in_a_checkpoint_never_runs(tmp_path):
    from mlff.imports import import_model

    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"config": {"version": "0.9.1"}, "model_state_dict": {},
                "payload": _Payload(str(marker))}, path)
    with pytest.raises(MLFFError, match="runs no code from the file"):
        import_model(path)
    assert not marker.exists()


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_files_that_are_not_checkpoints_are_clear_errors(tmp_path):
    from mlff.imports import import_model

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MLFFError, match="not a readable PyTorch checkpoint"):
        import_model(junk)
    plain = tmp_path / "plain.pth"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(MLFFError, match="not a SevenNet checkpoint"):
        import_model(plain)
    other = tmp_path / "model.xyz"
    other.write_text("1\n\nH 0 0 0\n")
    with pytest.raises(MLFFError, match="unknown kind of model file"):
        import_model(other)


@needs_checkpoints
def test_unexpected_weights_are_refused(tmp_path):
    from mlff.imports import import_model
    from mlff.imports.sevennet import pretrained_path, read_checkpoint

    checkpoint = read_checkpoint(pretrained_path("sevennet-l3i5"))
    checkpoint = {"config": checkpoint["config"],
                  "model_state_dict": dict(checkpoint["model_state_dict"])}
    checkpoint["model_state_dict"]["5_convolution.weight_nn.layer0.weight"] = torch.zeros(8, 64)
    path = tmp_path / "extra.pth"
    torch.save(checkpoint, path)
    with pytest.raises(MLFFError, match="unexpected weights 5_convolution"):
        import_model(path)
    del checkpoint["model_state_dict"]["5_convolution.weight_nn.layer0.weight"]
    checkpoint["model_state_dict"]["reduce_input_to_hidden.linear.weight"] = torch.zeros(7)
    torch.save(checkpoint, path)
    with pytest.raises(MLFFError, match="does not fit the model"):
        import_model(path)


def _golden_name(name: str, head: str | None) -> str:
    return f"{name}{'-' + head.lower() if head else ''}.json"


def write_golden_files() -> None:
    """Write sevenn's float64 results on the structures of every variant (needs sevenn)."""
    from mlff.imports.sevennet import pretrained_path
    from tests.imports import sevenn_reference

    GOLDEN.mkdir(exist_ok=True)
    structures = small_structures()
    for (name, head), keys in VARIANTS.items():
        model = sevenn_reference.float64_model(pretrained_path(name), head)
        record = {"sevenn": "0.13.0", "dtype": "float64", "units": "eV, eV/Å, eV/Å³ (ASE Voigt)",
                  "structures": {}}
        for key in keys:
            atoms = structures[key]
            result = sevenn_reference.evaluate(model, atoms)
            record["structures"][key] = {
                "formula": atoms.get_chemical_formula(),
                "energy": round(result["energy"], 9),
                "forces": np.round(result["forces"], 8).tolist(),
                "stress": np.round(result["stress"], 9).tolist() if atoms.pbc.all() else None,
            }
        path = GOLDEN / _golden_name(name, head)
        path.write_text(json.dumps(record, separators=(",", ":")))
        print("wrote", path)


if __name__ == "__main__":
    write_golden_files()


@needs_sevenn
def test_the_foundation_head_of_a_two_head_sevennet_0_is_sevennet_0():
    """Multi-head fine-tuning starts with a foundation head that is SevenNet-0 itself (as
    sevenn computes it), however the other head is changed."""
    from mlff.imports.sevennet import pretrained_path
    from mlff.models.heads import add_heads, select_head
    from tests.imports import sevenn_reference

    potential = imported("sevennet-0").replica()
    add_heads(potential, ["main", "foundation"])
    with torch.no_grad():  # as if training had moved the main head
        potential.model.readout.weight.mul_(1.5)
    foundation = select_head(potential, "foundation")
    reference = sevenn_reference.float64_model(pretrained_path("sevennet-0"), None)
    structures = small_structures()
    for key in ("ethanol-molecule", "Cu-fcc"):
        atoms = structures[key]
        expected = sevenn_reference.evaluate(reference, atoms)
        assert_close(mlff_results(foundation, atoms), expected, len(atoms), E_ATOM, FORCE,
                     STRESS, f"foundation head {key}")
        main = mlff_results(potential, atoms)  # the default head: main, changed
        assert abs(main["energy"] - expected["energy"]) > 1e-3
