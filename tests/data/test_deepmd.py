"""DeePMD-kit's deepmd/npy directories: round trips, layouts, units and errors."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT

from mlff.data import GraphDataset, read_structures, structure_from_atoms
from mlff.data import keys as K
from mlff.data.dataset import file_fingerprint
from mlff.data.deepmd import is_deepmd_dir, read_deepmd_dir, write_deepmd_dir
from mlff.data.readers import check_file, iter_structures
from mlff.errors import DataError
from tests import helpers

ETHANOL = Path(__file__).resolve().parents[2] / "examples" / "ethanol" / "train.xyz"


def assert_same_structures(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.atoms.get_chemical_symbols() == b.atoms.get_chemical_symbols()
        np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
        np.testing.assert_array_equal(a.atoms.cell.array, b.atoms.cell.array)
        np.testing.assert_array_equal(a.atoms.pbc, b.atoms.pbc)
        assert a.energy == b.energy
        np.testing.assert_array_equal(a.forces, b.forces)
        if b.stress is None or not b.atoms.pbc.all():
            assert a.stress is None
        else:  # through virial = -stress * volume and back: equal to rounding
            np.testing.assert_allclose(a.stress, b.stress, rtol=1e-14, atol=1e-18)


def emt_copper(count: int = 3) -> list:
    """Strained, rattled 8-atom Cu cells labelled by EMT (energy, forces, stress)."""
    frames = []
    for seed in range(count):
        atoms = helpers.copper(seed=seed, amplitude=0.05).repeat((2, 1, 1))
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    return frames


# ------------------------------------------------------------------- round trips


def test_round_trip_of_mixed_frames_is_exact(tmp_path, labelled_frames):
    # 2 ethanol, 1 water, 2 Cu cells (with stress): three systems, in order of appearance
    expected = [structure_from_atoms(a) for a in labelled_frames]
    systems = write_deepmd_dir(labelled_frames, tmp_path / "out")
    assert [p.name for p in systems] == ["sys.000", "sys.001", "sys.002"]
    assert is_deepmd_dir(tmp_path / "out")
    got = read_structures(tmp_path / "out")
    assert_same_structures(got, expected)
    assert got[3].stress is not None and np.abs(got[3].stress).max() > 0
    assert got[0].source == f"{tmp_path / 'out' / 'sys.000' / 'set.000'}:0"
    assert got[4].source == f"{tmp_path / 'out' / 'sys.002' / 'set.000'}:1"
    assert (tmp_path / "out" / "sys.000" / "nopbc").is_file()
    assert not (tmp_path / "out" / "sys.002" / "nopbc").exists()


def test_single_system_with_several_sets(tmp_path):
    frames = emt_copper(5)
    systems = write_deepmd_dir(frames, tmp_path / "cu", set_size=2)
    assert systems == [tmp_path / "cu"]
    sets = sorted(p.name for p in (tmp_path / "cu").glob("set.*"))
    assert sets == ["set.000", "set.001", "set.002"]
    assert (tmp_path / "cu" / "type_map.raw").read_text().split() == ["Cu"]
    got = read_deepmd_dir(tmp_path / "cu")
    assert_same_structures(got, [structure_from_atoms(a) for a in frames])
    assert got[4].source.endswith("set.002:0")


def test_virial_is_minus_strain_derivative_and_stress_is_ase_sign(tmp_path):
    # DeePMD's virial is -dE/dε; check the written virial against a finite strain derivative
    # of the EMT energy, and the stress read back against EMT's own (ASE-sign) stress
    atoms = emt_copper(1)[0]
    write_deepmd_dir([atoms], tmp_path / "cu")
    virial = np.load(tmp_path / "cu" / "set.000" / "virial.npy").reshape(3, 3)
    eps = 1e-6
    numerical = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1.0, -1.0):
                strain = np.eye(3)
                strain[a, b] += sign * eps / 2
                strain[b, a] += sign * eps / 2
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
                strained.calc = EMT()
                energies.append(strained.get_potential_energy())
            numerical[a, b] = -(energies[0] - energies[1]) / (2 * eps)
    assert np.abs(virial).max() > 0.1
    np.testing.assert_allclose(virial, numerical, rtol=0, atol=1e-6)
    structure = read_deepmd_dir(tmp_path / "cu")[0]
    np.testing.assert_allclose(structure.stress, atoms.get_stress(voigt=False), rtol=1e-13, atol=0)


def test_nopbc_systems(tmp_path, ethanol):
    # written with a zero cell and read back non-periodic
    labelled = helpers.with_random_labels(ethanol)
    write_deepmd_dir([labelled], tmp_path / "mol")
    assert (tmp_path / "mol" / "nopbc").is_file()
    (structure,) = read_deepmd_dir(tmp_path / "mol")
    assert not structure.atoms.pbc.any() and structure.stress is None
    np.testing.assert_array_equal(structure.atoms.cell.array, np.zeros((3, 3)))
    # a nopbc system needs no box.npy, and its virial (if any) is ignored
    (tmp_path / "mol" / "set.000" / "box.npy").unlink()
    np.save(tmp_path / "mol" / "set.000" / "virial.npy", np.ones((1, 9)))
    (again,) = read_deepmd_dir(tmp_path / "mol")
    assert not again.atoms.pbc.any() and again.stress is None
    np.testing.assert_array_equal(again.atoms.positions, ethanol.positions)


def write_raw_system(folder: Path, symbols: list[str], types: list[int], coords: np.ndarray,
                     box: np.ndarray | None = None, **labels: np.ndarray) -> Path:
    """A deepmd/npy system written by hand, float32 as dpdata writes it."""
    folder.mkdir(parents=True)
    (folder / "type.raw").write_text(" ".join(map(str, types)) + "\n")
    (folder / "type_map.raw").write_text("\n".join(symbols) + "\n")
    set_dir = folder / "set.000"
    set_dir.mkdir()
    np.save(set_dir / "coord.npy", coords.astype(np.float32))
    if box is None:
        (folder / "nopbc").write_text("")
    else:
        np.save(set_dir / "box.npy", box.astype(np.float32))
    for name, value in labels.items():
        np.save(set_dir / f"{name}.npy", value.astype(np.float32))
    return folder


def test_hand_written_float32_system_and_type_order(tmp_path):
    # types follow type_map, not atomic numbers: O is type 0, H type 1
    coords = np.array([[0.0, 0.0, 0.0, 0.96, 0.0, 0.0, -0.24, 0.93, 0.0]])
    write_raw_system(tmp_path / "w", ["O", "H"], [0, 1, 1], coords,
                     energy=np.array([-14.25]), force=np.arange(9.0)[None] / 10)
    (structure,) = read_deepmd_dir(tmp_path / "w")
    assert structure.atoms.get_chemical_symbols() == ["O", "H", "H"]
    assert structure.atoms.positions.dtype == np.float64
    np.testing.assert_allclose(structure.atoms.positions, coords.reshape(3, 3), atol=1e-6)
    assert structure.energy == pytest.approx(-14.25)
    np.testing.assert_allclose(structure.forces, np.arange(9.0).reshape(3, 3) / 10, atol=1e-6)


def test_multi_system_directories_at_any_depth(tmp_path, labelled_frames):
    parent = tmp_path / "data"
    write_deepmd_dir(labelled_frames[3:], parent / "b_metal")
    write_deepmd_dir(labelled_frames[:2], parent / "a" / "ethanol")
    (parent / "notes.txt").write_text("not data")
    assert is_deepmd_dir(parent) and is_deepmd_dir(parent / "a")
    structures = read_structures(parent)
    assert [len(s) for s in structures] == [9, 9, 4, 4]  # sorted: a/ethanol, then b_metal
    assert structures[0].source.startswith(str(parent / "a" / "ethanol" / "set.000"))
    assert structures[2].source.startswith(str(parent / "b_metal" / "set.000"))
    # streaming and frame selection as for a file
    assert [s.source for s in iter_structures(parent)] == [s.source for s in structures]
    assert read_structures(parent, index="-1")[0].source == structures[-1].source
    assert [s.source for s in read_structures(parent, index="1::2")] == [
        structures[1].source, structures[3].source
    ]
    assert len(read_structures(parent, format="deepmd/npy")) == 4


def test_real_atom_types_give_per_frame_elements(tmp_path):
    # DeePMD's "mixed" layout: type.raw is a placeholder, real_atom_types.npy the truth
    coords = np.zeros((2, 6))
    coords[:, 3] = 1.1
    folder = write_raw_system(tmp_path / "mixed", ["H", "C", "O"], [0, 0], coords)
    np.save(folder / "set.000" / "real_atom_types.npy", np.array([[1, 2], [0, 0]]))
    first, second = read_deepmd_dir(folder)
    assert first.atoms.get_chemical_symbols() == ["C", "O"]
    assert second.atoms.get_chemical_symbols() == ["H", "H"]


def test_ethanol_from_deepmd_gives_the_same_graphs(tmp_path):
    frames = ase.io.read(ETHANOL, index=":20")
    write_deepmd_dir(frames, tmp_path / "ethanol")
    from_xyz = GraphDataset.from_structures(read_structures(ETHANOL, index=":20"), cutoff=5.0)
    from_deepmd = GraphDataset.from_file(tmp_path / "ethanol", cutoff=5.0,
                                         require=("energy", "forces"))
    assert len(from_deepmd) == 20
    for a, b in zip(from_deepmd.graphs, from_xyz.graphs):
        assert set(a) == set(b)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_dataset_cache_of_a_directory_follows_its_contents(tmp_path, labelled_frames):
    data = tmp_path / "data"
    write_deepmd_dir(labelled_frames, data)
    cache = tmp_path / "cache"
    first = GraphDataset.from_file(data, cutoff=3.0, cache_dir=cache)
    assert len(list(cache.glob("*.safetensors"))) == 1
    again = GraphDataset.from_file(data, cutoff=3.0, cache_dir=cache)
    assert again.fingerprint == first.fingerprint == file_fingerprint(data)
    for a, b in zip(again.graphs, first.graphs):
        torch.testing.assert_close(a[K.POSITIONS], b[K.POSITIONS], rtol=0, atol=0)
    # changing one file of the directory changes the fingerprint and the labels read
    energy_file = data / "sys.000" / "set.000" / "energy.npy"
    energies = np.load(energy_file)
    np.save(energy_file, energies + 1.0)
    changed = GraphDataset.from_file(data, cutoff=3.0, cache_dir=cache)
    assert changed.fingerprint != first.fingerprint
    assert float(changed.graphs[0][K.ENERGY][0]) == pytest.approx(energies[0] + 1.0)
    assert len(list(cache.glob("*.safetensors"))) == 2
    # renaming a file changes it too, though no byte changed
    before = file_fingerprint(data)
    (data / "sys.000").rename(data / "sys.009")
    assert file_fingerprint(data) != before


def test_cli_to_deepmd(tmp_path, extxyz_file, capsys):
    from mlff.cli.main import main

    assert main(["data", "to-deepmd", str(extxyz_file), str(tmp_path / "out")]) == 0
    assert "wrote 5 structures as 3 deepmd/npy system(s)" in capsys.readouterr().out
    assert_same_structures(read_structures(tmp_path / "out"), read_structures(extxyz_file))
    assert main(["data", "to-deepmd", str(extxyz_file), str(tmp_path / "out")]) == 2
    assert "is not an empty directory" in capsys.readouterr().err


# ------------------------------------------------------------------------ errors


@pytest.fixture
def system(tmp_path) -> Path:
    """A valid periodic two-frame Cu system (EMT labels, with virials)."""
    write_deepmd_dir(emt_copper(2), tmp_path / "cu")
    return tmp_path / "cu"


def read_error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_structures(path, **kwargs)
    return str(info.value)


def test_error_missing_type_map(system):
    (system / "type_map.raw").unlink()
    message = read_error(system)
    assert str(system) in message and "no type_map.raw" in message and "element symbol" in message


def test_error_bad_element_and_type(system):
    (system / "type_map.raw").write_text("Xx\n")
    assert "'Xx' is not an element symbol" in read_error(system)
    (system / "type_map.raw").write_text("Cu\n")
    (system / "type.raw").write_text("0 0 0 0 0 0 0 1\n")
    message = read_error(system)
    assert "type.raw" in message and "atom 7 has type 1" in message and "1 types" in message


def test_error_coord_shape_does_not_fit_type_raw(system):
    (system / "type.raw").write_text("0\n" * 7)
    message = read_error(system)
    assert f"{system / 'set.000' / 'coord.npy'}" in message
    assert "shape (2, 24)" in message and "(nframes, 21)" in message and "7 atoms" in message


def test_error_label_frames_differ(system):
    np.save(system / "set.000" / "energy.npy", np.zeros(3))
    message = read_error(system)
    assert "energy.npy" in message and "3 frames" in message and "coord.npy holds 2" in message


def test_error_missing_box_and_sets(system):
    (system / "set.000" / "box.npy").unlink()
    message = read_error(system)
    assert f"{system / 'set.000'}: no box.npy" in message and "nopbc" in message
    for file in (system / "set.000").iterdir():
        file.unlink()
    (system / "set.000").rmdir()
    assert "no set.* folders" in read_error(system)


def test_error_required_label_missing(system):
    (system / "set.000" / "force.npy").unlink()
    assert len(read_structures(system)) == 2
    message = read_error(system, require=("forces",))
    assert f"{system / 'set.000'}: no force.npy" in message and "forces" in message


def test_error_names_the_frame_of_a_bad_value(system):
    coords = np.load(system / "set.000" / "coord.npy")
    coords[1, 4] = np.nan
    np.save(system / "set.000" / "coord.npy", coords)
    message = read_error(system)
    assert f"{system / 'set.000'}:1" in message and "atom 1" in message


def test_error_plain_directory_and_unreadable_npy(tmp_path, system):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a structure file or a deepmd/npy data directory"):
        check_file(tmp_path / "empty")
    assert "not a structure file or a deepmd/npy" in read_error(tmp_path / "empty")
    (system / "set.000" / "energy.npy").write_text("garbage")
    assert "energy.npy: cannot read it as a .npy array" in read_error(system)


def test_write_errors(tmp_path, labelled_frames):
    slab = helpers.with_random_labels(helpers.copper())
    slab.pbc = [True, True, False]
    with pytest.raises(DataError, match="fully periodic or non-periodic"):
        write_deepmd_dir([slab], tmp_path / "slab")
    write_deepmd_dir(labelled_frames[:1], tmp_path / "used")
    with pytest.raises(DataError, match="not an empty directory"):
        write_deepmd_dir(labelled_frames[:1], tmp_path / "used")
    with pytest.raises(DataError, match="lacks the element"):
        write_deepmd_dir(labelled_frames[:1], tmp_path / "new", type_map=["H", "C"])
