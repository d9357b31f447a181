"""Readers: labels under default and custom keys, and a DataError for every bad input."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mlff import read_structures
from mlff.data import LabelKeys, structure_from_atoms
from mlff.errors import DataError, MLFFError
from tests import helpers


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def frame_text(symbols=("Cu", "Cu"), info="", properties="species:S:1:pos:R:3",
               rows=None) -> str:
    """One hand-written extxyz frame of a 3.6 Å cubic cell."""
    rows = rows or [f"{s} {0.1 + i} {0.2 * i} {0.3}" for i, s in enumerate(symbols)]
    header = (f'Lattice="3.6 0 0 0 3.6 0 0 0 3.6" Properties={properties} {info} pbc="T T T"')
    return f"{len(rows)}\n{header}\n" + "\n".join(rows) + "\n"


# ------------------------------------------------------------------ labels


def test_default_keys(extxyz_file, labelled_frames):
    structures = read_structures(extxyz_file)
    assert len(structures) == len(labelled_frames)
    for frame, (structure, atoms) in enumerate(zip(structures, labelled_frames)):
        assert structure.source == f"{extxyz_file}:{frame}"
        assert structure.energy == pytest.approx(atoms.get_potential_energy())
        np.testing.assert_allclose(structure.forces, atoms.get_forces(), atol=1e-7)
        np.testing.assert_allclose(structure.atoms.positions, atoms.positions, atol=1e-7)
        assert (structure.atoms.numbers == atoms.numbers).all()
        assert (structure.atoms.pbc == atoms.pbc).all()
        if atoms.pbc.all():
            np.testing.assert_allclose(structure.stress, atoms.get_stress(voigt=False), atol=1e-7)
            assert structure.stress.shape == (3, 3)
        else:
            assert structure.stress is None
        assert structure.weight == 1.0 and structure.config_type == "Default"


def test_weight_and_config_type(tmp_path):
    atoms = helpers.with_random_labels(helpers.copper())
    atoms.info.update(weight=2.5, config_type="bulk")
    path = tmp_path / "w.xyz"
    ase.io.write(path, atoms, format="extxyz")
    (structure,) = read_structures(path)
    assert structure.weight == 2.5 and structure.config_type == "bulk"


def test_custom_keys(tmp_path):
    atoms = helpers.copper()
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(len(atoms), 3))
    stress = rng.normal(size=(3, 3))
    atoms.info.update(REF_energy=-12.5, REF_weight=0.5, REF_type="md")
    atoms.arrays["REF_forces"] = forces
    atoms.info["REF_stress"] = stress
    path = tmp_path / "ref.xyz"
    ase.io.write(path, atoms, format="extxyz")
    keys = LabelKeys(energy="REF_energy", forces="REF_forces", stress="REF_stress",
                     weight="REF_weight", config_type="REF_type")
    (structure,) = read_structures(path, keys, require=("energy", "forces", "stress"))
    assert structure.energy == -12.5
    np.testing.assert_allclose(structure.forces, forces)
    np.testing.assert_allclose(structure.stress, stress)
    assert structure.weight == 0.5 and structure.config_type == "md"
    # with the default keys these labels are not found
    (plain,) = read_structures(path)
    assert plain.energy is None and plain.forces is None and plain.stress is None


def test_stress_as_voigt_6_and_9_values(tmp_path):
    voigt = "1.0 2.0 3.0 4.0 5.0 6.0"
    full = "1.0 6.0 5.0 6.0 2.0 4.0 5.0 4.0 3.0"
    expected = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    for name, value in [("six", voigt), ("nine", full)]:
        path = write_text(tmp_path / f"{name}.xyz", frame_text(info=f'REF_stress="{value}"'))
        (structure,) = read_structures(path, LabelKeys(stress="REF_stress"), require=("stress",))
        np.testing.assert_allclose(structure.stress, expected, err_msg=name)


def test_bad_stress_shape(tmp_path):
    path = write_text(tmp_path / "s.xyz", frame_text(info='REF_stress="1.0 2.0 3.0 4.0"'))
    with pytest.raises(DataError, match=r"s\.xyz:0.*stress has shape \(4,\)"):
        read_structures(path, LabelKeys(stress="REF_stress"))


def test_index_selects_frames(extxyz_file):
    structures = read_structures(extxyz_file, index="1:3")
    assert len(structures) == 2
    assert structures[0].source == f"{extxyz_file}:0"  # 0-based within the selection


def test_structure_from_atoms_reads_info_and_arrays():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.info["energy"] = -1.0
    atoms.arrays["forces"] = np.ones((2, 3))
    structure = structure_from_atoms(atoms, require=("energy", "forces"))
    assert structure.energy == -1.0 and structure.forces.sum() == 6.0
    # a calculator's results take precedence over info
    atoms.calc = SinglePointCalculator(atoms, energy=-2.0)
    assert structure_from_atoms(atoms).energy == -2.0


# --------------------------------------------------------------- bad input


def test_errors_are_mlff_errors():
    assert issubclass(DataError, MLFFError)


def test_missing_path(tmp_path):
    path = tmp_path / "nope.xyz"
    with pytest.raises(DataError, match="no such file") as info:
        read_structures(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(DataError, match="directory"):
        read_structures(tmp_path)


def test_empty_file(tmp_path):
    path = write_text(tmp_path / "empty.xyz", "")
    with pytest.raises(DataError, match="empty") as info:
        read_structures(path)
    assert str(path) in str(info.value)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"cannot read frame 0") as info:
        read_structures(path)
    assert str(path) in str(info.value)


def frame_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each frame of an extxyz text."""
    lines = text.splitlines(keepends=True)
    offsets = np.cumsum([0] + [len(line) for line in lines])
    spans, k = [], 0
    while k < len(lines):
        n = int(lines[k])
        spans.append((int(offsets[k]), int(offsets[k + n + 2])))
        k += n + 2
    return spans


@pytest.mark.parametrize("cut", [0.2, 0.5, 0.9])
def test_truncated_frame(tmp_path, extxyz_file, cut):
    text = extxyz_file.read_text()
    spans = frame_spans(text)
    assert len(spans) == 5
    # keep the first two frames whole and cut the third mid-frame (mid-line, too)
    start, end = spans[2]
    cut_at = start + int(cut * (end - start))
    assert text[cut_at - 1] != "\n"
    path = write_text(tmp_path / "cut.xyz", text[:cut_at])
    with pytest.raises(DataError, match=r"cannot read frame 2") as info:
        read_structures(path)
    assert str(path) in str(info.value)


def test_missing_required_forces(tmp_path):
    frames = [helpers.with_random_labels(helpers.water(seed=s), seed=s) for s in range(3)]
    frames[1].calc = SinglePointCalculator(frames[1], energy=-1.0)  # no forces
    path = tmp_path / "noforces.xyz"
    ase.io.write(path, frames, format="extxyz")
    assert read_structures(path)[1].forces is None  # fine unless required
    with pytest.raises(DataError) as info:
        read_structures(path, require=("forces",))
    message = str(info.value)
    assert f"{path}:1" in message and "'forces'" in message and "energy" in message


def test_nan_position_names_the_atom(tmp_path):
    rows = ["Cu 0.0 0.0 0.0", "Cu 1.8 1.8 0.0", "Cu nan 0.0 1.8", "Cu 0.0 1.8 1.8"]
    text = frame_text(symbols=("Cu",) * 2) + frame_text(rows=rows)
    path = write_text(tmp_path / "nanpos.xyz", text)
    with pytest.raises(DataError, match="position of atom 2") as info:
        read_structures(path)
    assert f"{path}:1" in str(info.value)


def test_nan_force_names_the_atom(tmp_path):
    rows = [f"Cu {i} 0.0 0.0 0.1 0.2 0.3" for i in range(3)]
    rows[1] = "Cu 1.0 0.0 0.0 0.1 NaN 0.3"
    text = frame_text(rows=rows, properties="species:S:1:pos:R:3:forces:R:3", info="energy=-1.0")
    path = write_text(tmp_path / "nanforce.xyz", text)
    with pytest.raises(DataError, match="force 'forces' of atom 1") as info:
        read_structures(path)
    assert f"{path}:0" in str(info.value)


def test_nan_energy(tmp_path):
    path = write_text(tmp_path / "nanenergy.xyz", frame_text(info="energy=nan"))
    with pytest.raises(DataError, match=r"nanenergy\.xyz:0: energy") as info:
        read_structures(path)
    assert "nan" in str(info.value)


def test_unknown_element_symbol(tmp_path):
    text = frame_text() + frame_text(symbols=("Cu", "Qz"))
    path = write_text(tmp_path / "element.xyz", text)
    with pytest.raises(DataError, match="cannot read frame 1") as info:
        read_structures(path)
    assert str(path) in str(info.value) and "Qz" in str(info.value)


def test_invalid_atomic_number():
    atoms = Atoms(numbers=[1, 0], positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(DataError, match="atom 1 has no valid element"):
        structure_from_atoms(atoms, source="x.xyz:4")


def test_no_atoms():
    with pytest.raises(DataError, match="x.xyz:0: the structure has no atoms"):
        structure_from_atoms(Atoms(), source="x.xyz:0")


def test_degenerate_periodic_cell():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]],
                  pbc=True)
    with pytest.raises(DataError, match="linearly dependent"):
        structure_from_atoms(atoms, source="x.xyz:0")


@pytest.mark.parametrize("weight", ["-1.0", "heavy"])
def test_bad_weight(tmp_path, weight):
    path = write_text(tmp_path / "weight.xyz", frame_text(info=f"weight={weight}"))
    with pytest.raises(DataError, match=r"weight\.xyz:0: weight 'weight'"):
        read_structures(path)


def test_wrong_forces_shape():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.info["REF_forces"] = np.ones((3, 3))
    atoms.arrays["REF_forces"] = np.ones((2, 2))
    with pytest.raises(DataError, match=r"shape \(2, 2\); expected \(2, 3\)"):
        structure_from_atoms(atoms, LabelKeys(forces="REF_forces"), source="x.xyz:0")
