"""Model files stay loadable across mlff versions (STYLE.md, example 13).

`golden/format-v{N}-{architecture}.mlff` are tiny models written by format version N, with
the energy and forces they gave on a fixed structure. Every later mlff must load them and
reproduce those numbers. A change of the file layout (metadata keys, tensor names or
shapes) without a FORMAT_VERSION bump fails `test_layout_changes_bump_the_format_version`.

To add the files of a new format version (after bumping FORMAT_VERSION and writing the
upgrade from the previous one), or of a new architecture: `python tests/models/test_golden_files.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from safetensors.torch import load as load_safetensors

GOLDEN = Path(__file__).resolve().parent / "golden"
ARCHITECTURES = ("allegro", "deeppot", "mace", "nequip", "painn", "schnet", "sevennet")


def _structure():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=4)
    return atoms


def _layout(path: Path) -> dict:
    """What a format version fixes: metadata keys, tensor names, shapes and dtypes."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read("metadata.json"))
        tensors = load_safetensors(archive.read("weights.safetensors"))
    return {
        "metadata_keys": sorted(metadata),
        "tensors": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(tensors.items())},
    }


def _golden_files():
    return sorted(GOLDEN.glob("format-v*-*.mlff"))


@pytest.mark.parametrize("path", _golden_files(), ids=lambda p: p.stem)
def test_golden_files_load_and_reproduce(path):
    from mlff import MLFFCalculator

    expected = json.loads(path.with_suffix(".json").read_text())
    atoms = _structure()
    atoms.calc = MLFFCalculator(path, dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"], abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"], atol=1e-9)


def test_every_architecture_has_a_golden_file_of_the_current_format():
    from mlff.models import architectures
    from mlff.models.io import FORMAT_VERSION

    assert set(ARCHITECTURES) == set(architectures())

    for architecture in ARCHITECTURES:
        assert (GOLDEN / f"format-v{FORMAT_VERSION}-{architecture}.mlff").is_file(), (
            f"no golden file of format {FORMAT_VERSION} for {architecture}: run "
            "`python tests/models/test_golden_files.py`"
        )


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_layout_changes_bump_the_format_version(tmp_path, architecture):
    from mlff.models import save_model
    from mlff.models.io import FORMAT_VERSION
    from tests import helpers

    fresh = save_model(helpers.build_potential(architecture, seed=1), tmp_path / "m.mlff")
    golden = GOLDEN / f"format-v{FORMAT_VERSION}-{architecture}.mlff"
    assert _layout(fresh) == _layout(golden), (
        "the model-file layout changed: raise FORMAT_VERSION in mlff/models/io.py, add the "
        "upgrade from the previous version, and write new golden files"
    )


def write_golden_files() -> None:
    """Write the missing golden files of the current format version (run by hand: once per
    version, and once for each new architecture); existing files are never rewritten."""
    from mlff import MLFFCalculator
    from mlff.models import save_model
    from mlff.models.io import FORMAT_VERSION
    from tests import helpers

    GOLDEN.mkdir(exist_ok=True)
    for architecture in ARCHITECTURES:
        path = GOLDEN / f"format-v{FORMAT_VERSION}-{architecture}.mlff"
        if path.exists():
            continue
        potential = helpers.build_potential(architecture, scale=2.0, shift=-0.1, seed=7)
        save_model(potential, path)
        atoms = _structure()
        atoms.calc = MLFFCalculator(path, dtype="float64")
        record = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces().tolist(),
                  "torch": torch.__version__}
        path.with_suffix(".json").write_text(json.dumps(record, indent=1))
        print("wrote", path)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    write_golden_files()
