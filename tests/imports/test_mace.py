"""mace-torch models imported into mlff equal mace-torch's own calculator, in float64.

The models are built by mace-torch itself in its own environment (``mace_peer.py`` in a
subprocess: mace-torch pins e3nn 0.4.4, mlff needs e3nn >= 0.5), saved both as the
pickled ``.model`` and as the documented state-dict export, evaluated there with
``MACECalculator`` and compared here with the imported model. The peer environment's
python is ``$MLFF_MACE_PYTHON`` (default ``/tmp/peers/venv-mace/bin/python``); without
it these tests skip, unless ``MLFF_REQUIRE_PEERS=1`` (CI) turns that into a failure.
The golden-file tests in ``test_mace_golden.py`` need no peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

from mlff.calculators.ase import MLFFCalculator
from mlff.imports.mace import load_mace
from mlff.models.io import save_model
from mlff.uq.io import load_model
from tests.imports import mace_cases

HERE = Path(__file__).parent
PEER_PYTHON = Path(os.environ.get("MLFF_MACE_PYTHON", "/tmp/peers/venv-mace/bin/python"))
# the tolerances mlff promises for imported models against mace-torch in float64
ENERGY_TOL, FORCE_TOL, STRESS_TOL = 1e-6, 1e-5, 1e-6  # eV/atom, eV/Å, eV/Å³


@pytest.fixture(scope="module")
def peer_models(tmp_path_factory) -> Path:
    """mace-torch's models, files and reference results for every case (one subprocess)."""
    if not PEER_PYTHON.exists():
        if os.environ.get("MLFF_REQUIRE_PEERS") == "1":
            pytest.fail(f"mace-torch environment missing: {PEER_PYTHON}")
        pytest.skip(f"mace-torch environment missing: {PEER_PYTHON} (see tests/imports/mace_peer.py)")
    out = tmp_path_factory.mktemp("mace")
    ase.io.write(out / "structures.extxyz", mace_cases.structures())
    (out / "spec.json").write_text(json.dumps(mace_cases.spec(str(out / "structures.extxyz"))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([str(PEER_PYTHON), str(HERE / "mace_peer.py"), str(out / "spec.json"),
                             str(out / "models")], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "models"


CASES = [(name, head) for name, (_, kwargs) in mace_cases.MODELS.items()
         for head in (kwargs.get("heads") or [None])]


def compare(calc: MLFFCalculator, results: list[dict], structures: Path) -> tuple[float, float, float]:
    """Largest energy (per atom), force and stress differences over the structures.

    ``structures``: the file mace-torch read (positions as written there, rounded).
    """
    worst = [0.0, 0.0, 0.0, 0.0]
    for atoms, reference in zip(ase.io.read(structures, ":"), results, strict=True):
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
@pytest.mark.parametrize(("name", "head"), CASES, ids=[f"{n}-{h or 'single'}" for n, h in CASES])
def test_imported_model_equals_mace_torch(peer_models, name, head, kind, tmp_path):
    reference = json.loads((peer_models / "reference.json").read_text())["results"]
    potential, provenance = load_mace(peer_models / f"{name}.{kind}", head=head)
    assert provenance["code"] == "mace-torch"
    assert len(provenance["sha256"]) == 64
    # through the model file, as users run it
    path = save_model(potential, tmp_path / "imported.mlff")
    loaded = load_model(path)
    assert loaded.metadata["provenance"]["sha256"] == provenance["sha256"]
    energy, forces, stress = compare(MLFFCalculator(loaded, dtype="float64"),
                                     reference[f"{name}/{head or 'Default'}"],
                                     peer_models.parent / "structures.extxyz")
    assert energy < ENERGY_TOL and forces < FORCE_TOL and stress < STRESS_TOL, (energy, forces, stress)


def test_the_matrix_covers_the_options():
    """The cases span what the import promises (guards against shrinking the matrix)."""
    kwargs = [k for _, k in mace_cases.MODELS.values()]
    max_l = {k["hidden_irreps"].count("+") for k in kwargs}
    correlations = set()
    for k in kwargs:
        c = k["correlation"]
        correlations.update(c if isinstance(c, list) else [c])
    assert max_l == {0, 1, 2}
    assert correlations == {1, 2, 3}
    assert {k["num_interactions"] for k in kwargs} == {1, 2, 3}
    assert any(k.get("pair_repulsion") for k in kwargs)
    assert {k.get("distance_transform", "None") for k in kwargs} == {"None", "Agnesi", "Soft"}
    assert {k.get("radial_type", "bessel") for k in kwargs} == {"bessel", "gaussian", "chebyshev"}
    blocks = {k["interaction_cls"] for k in kwargs} | {k["interaction_cls_first"] for k in kwargs}
    assert len(blocks) == 6  # every block mace-torch 0.3.16's mace_run_train offers
    assert any(k.get("heads") for k in kwargs)
    assert any(k.get("use_agnostic_product") for k in kwargs)
    assert any(k.get("use_so3") for k in kwargs)
    assert any(k.get("edge_irreps") and k.get("use_edge_irreps_first") for k in kwargs)
    assert {k.get("use_reduced_cg", True) for k in kwargs} == {True, False}
    assert any("0o" in k["hidden_irreps"] for k in kwargs)
    assert {k.get("apply_cutoff", True) for k in kwargs} == {True, False}


def test_unknown_head_is_refused(peer_models):
    from mlff.errors import ModelFileError

    with pytest.raises(ModelFileError, match="no head 'pbe0'.*pbe, r2scan"):
        load_mace(peer_models / "multihead.model", head="pbe0")
    with pytest.raises(ModelFileError, match="multi-head.*--head"):
        load_mace(peer_models / "multihead.pt")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
