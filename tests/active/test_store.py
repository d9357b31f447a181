"""The label store on a real SQLite file: keys, rows, provenance, export, kill safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from mlff import read_structures
from mlff.active.store import LabelStore, structure_key
from mlff.errors import DataError
from mlff.oracles import LabelResult, load_oracle
from tests import helpers


def test_structure_key_depends_on_geometry_only():
    copper = helpers.copper(seed=1)
    key = structure_key(copper)
    assert len(key) == 64 and int(key, 16) >= 0
    same = copper.copy()
    same.info["config_type"] = "bulk"
    same.set_momenta(np.ones((len(same), 3)))
    same.calc = SinglePointCalculator(same, energy=1.0)
    same.positions += 1e-10  # below the 1e-8 Å rounding
    assert structure_key(same) == key
    for change in ("position", "cell", "pbc", "element"):
        other = copper.copy()
        if change == "position":
            other.positions[2, 1] += 1e-6
        elif change == "cell":
            other.cell[0, 0] += 1e-6
        elif change == "pbc":
            other.pbc = [True, True, False]
        else:
            other.numbers[0] = 28
        assert structure_key(other) != key, change


def _result(atoms, energy: float) -> LabelResult:
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(
        labelled, energy=energy, forces=np.full((len(atoms), 3), energy / 10),
        stress=np.arange(6.0) * energy if atoms.pbc.all() else None)
    return LabelResult(True, labelled, None, 0.5)


def test_rows_provenance_and_duplicates(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    oracle = load_oracle({"type": "emt"})
    copper, water, third = helpers.copper(seed=1), helpers.water(seed=2), helpers.copper(seed=3)
    keys = [structure_key(a) for a in (copper, water, third)]
    assert len(store) == 0 and not store.has(keys[0]) and store.status(keys[0]) is None

    store.add_label(_result(copper, 1.0), keys[0],
                    oracle.provenance(0, source="start.xyz:0", config_type="bulk"))
    store.add_failure(water, keys[1], "SCF did not converge", oracle.provenance(1),
                      wall_time=2.5)
    store.add(_result(third, 3.0), third, keys[2], oracle.provenance(1))
    assert len(store) == 3 and store.count("ok") == 2 and store.count("failed") == 1
    assert store.has(keys[1]) and store.status(keys[1]) == "failed"
    assert store.statuses() == {keys[0]: "ok", keys[1]: "failed", keys[2]: "ok"}

    first, last = store.labelled()
    assert first.get_potential_energy() == 1.0 and last.get_potential_energy() == 3.0
    np.testing.assert_allclose(first.get_forces(), 0.1)
    np.testing.assert_allclose(first.get_stress(), np.arange(6.0))
    np.testing.assert_allclose(first.positions, copper.positions)
    assert first.info["iteration"] == 0 and first.info["oracle"] == "emt"
    assert first.info["wall_time"] == 0.5 and first.info["structure_key"] == keys[0]
    assert first.info["source"] == "start.xyz:0" and first.info["config_type"] == "bulk"
    assert first.info["oracle_settings"] == oracle.settings  # JSON, from the row's data
    assert [a.info["structure_key"] for a in store.labelled(iteration=1)] == [keys[2]]
    assert store.labelled(iteration=7) == []
    (failure,) = store.failures()
    assert failure.info["reason"] == "SCF did not converge" and failure.info["wall_time"] == 2.5
    assert failure.calc is None

    # a structure is stored once: a second label raises, a failure is replaced by a label
    with pytest.raises(DataError, match="already labelled"):
        store.add_label(_result(copper, 9.0), keys[0], oracle.provenance(2))
    with pytest.raises(DataError, match="already labelled"):
        store.add_failure(copper, keys[0], "late failure", oracle.provenance(2))
    store.add_label(_result(water, 2.0), keys[1], oracle.provenance(2))
    assert len(store) == 3 and store.count("failed") == 0 and store.status(keys[1]) == "ok"
    relabelled = store.labelled(iteration=2)[0]
    assert "reason" not in relabelled.info and relabelled.get_potential_energy() == 2.0

    with pytest.raises(ValueError, match="lacks iteration"):
        store.add_label(_result(helpers.water(seed=5), 1.0), "k", {"oracle": "emt"})
    with pytest.raises(ValueError, match="reserved"):
        store.add_label(_result(helpers.water(seed=5), 1.0), "k",
                        {"iteration": 0, "oracle": "emt", "energy": 1})
    with pytest.raises(ValueError, match="successful result"):
        store.add_label(LabelResult(False, None, "boom", 0.1), "k", oracle.provenance(0))


def test_extxyz_export_reads_back_with_mlff_readers(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    oracle = load_oracle({"type": "emt"})
    structures = [helpers.copper(seed=1), helpers.water(seed=2)]
    for atoms in structures:
        result = oracle.label(atoms)
        store.add_label(result, structure_key(atoms), oracle.provenance(4))
    path = tmp_path / "labels.xyz"
    assert store.write_extxyz(path) == 2
    read = read_structures(path, require=("energy", "forces"))
    for structure, atoms in zip(read, store.labelled()):
        assert structure.energy == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(structure.forces, atoms.get_forces(), atol=1e-10)
        assert structure_key(structure.atoms) == atoms.info["structure_key"]
    np.testing.assert_allclose(read[0].stress, store.labelled()[0].get_stress(voigt=False),
                               atol=1e-10)
    assert read[1].stress is None  # the molecule has none
    text = path.read_text()
    assert "oracle=emt" in text and "iteration=4" in text and "oracle_settings=" in text


def test_extxyz_import_restores_labels_and_provenance(tmp_path):
    source = LabelStore(tmp_path / "source.db")
    oracle = load_oracle({"type": "emt"})
    structures = [helpers.copper(seed=1), helpers.copper(seed=2), helpers.water(seed=3)]
    for iteration, atoms in enumerate(structures):
        source.add_label(oracle.label(atoms), structure_key(atoms),
                         oracle.provenance(iteration, walker=7))
    path = tmp_path / "labels.xyz"
    source.write_extxyz(path)

    target = LabelStore(tmp_path / "target.db")
    wanted = {structure_key(structures[0]), structure_key(structures[2])}
    assert target.import_extxyz(path, keys=wanted) == 2
    assert target.import_extxyz(path) == 1  # the one left out
    assert target.import_extxyz(path) == 0  # a second import adds nothing
    by_key = {a.info["structure_key"]: a for a in target.labelled()}
    for atoms in source.labelled():
        copy = by_key[atoms.info["structure_key"]]
        assert copy.get_potential_energy() == pytest.approx(atoms.get_potential_energy(),
                                                            rel=1e-12)
        np.testing.assert_allclose(copy.get_forces(), atoms.get_forces(), atol=1e-10)
        for name in ("iteration", "oracle", "walker", "oracle_settings", "oracle_versions"):
            assert copy.info[name] == atoms.info[name], name
        assert copy.info["wall_time"] == pytest.approx(atoms.info["wall_time"], rel=1e-9)
    np.testing.assert_allclose(by_key[structure_key(structures[0])].get_stress(),
                               source.labelled()[0].get_stress(), atol=1e-10)
    assert isinstance(by_key[structure_key(structures[0])].info["oracle_settings"], dict)


def test_extxyz_import_refuses_edited_or_foreign_files(tmp_path):
    source = LabelStore(tmp_path / "source.db")
    oracle = load_oracle({"type": "emt"})
    atoms = helpers.copper(seed=1)
    source.add_label(oracle.label(atoms), structure_key(atoms), oracle.provenance(0))
    path = tmp_path / "labels.xyz"
    source.write_extxyz(path)
    target = LabelStore(tmp_path / "target.db")

    edited = tmp_path / "edited.xyz"
    frame = read_structures(path)[0].atoms
    lines = path.read_text().splitlines()
    x = f"{frame.positions[0, 0]:.8f}"
    assert x in lines[2]
    lines[2] = lines[2].replace(x, f"{frame.positions[0, 0] + 0.01:.8f}", 1)
    edited.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"edited.xyz: frame 0: its structure_key"):
        target.import_extxyz(edited)

    plain = tmp_path / "plain.xyz"
    labelled = helpers.copper(seed=4)
    labelled.calc = SinglePointCalculator(labelled, energy=-1.0,
                                          forces=np.zeros((len(labelled), 3)))
    labelled.write(plain)
    with pytest.raises(DataError, match=r"plain.xyz: frame 0 lacks structure_key, iteration"):
        target.import_extxyz(plain)
    unlabelled = tmp_path / "unlabelled.xyz"
    helpers.copper(seed=5).write(unlabelled)
    with pytest.raises(DataError, match=r"unlabelled.xyz: frame 0 has no energy and forces"):
        target.import_extxyz(unlabelled)
    assert len(target) == 0


def test_bad_locations(tmp_path):
    with pytest.raises(DataError, match="JSON database"):
        LabelStore(tmp_path / "labels.json")
    with pytest.raises(DataError, match="does not exist"):
        LabelStore(tmp_path / "missing" / "labels.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n" * 100)
    with pytest.raises(DataError, match="not an ASE SQLite database"):
        LabelStore(junk)


REPOSITORY = Path(__file__).resolve().parents[2]
WRITER = """
import sys
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from mlff.active.store import LabelStore, structure_key
from mlff.oracles import LabelResult
from tests import helpers

store = LabelStore(sys.argv[1])
base = helpers.copper(seed=0)
i = 0
while True:
    atoms = base.copy()
    atoms.positions[0, 0] += 1e-3 * i
    atoms.calc = SinglePointCalculator(atoms, energy=float(i), forces=np.full((4, 3), i * 1e-3),
                                       stress=np.full(6, i * 1e-4))
    store.add_label(LabelResult(True, atoms, None, 0.0), structure_key(atoms),
                    {"iteration": i, "oracle": "writer"})
    print(i, flush=True)
    i += 1
"""


def test_another_process_sees_committed_rows_and_a_killed_writer_loses_none(tmp_path):
    path = tmp_path / "labels.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                              text=True, cwd=REPOSITORY)
    try:
        reported = -1
        deadline = time.time() + 60
        while reported < 40 and time.time() < deadline:
            reported = int(writer.stdout.readline())
            if reported == 20:  # read from this process while the writer goes on
                seen = LabelStore(path).count("ok")
                assert seen >= 21
        assert reported >= 40, "the writer did not get going"
        os.kill(writer.pid, signal.SIGKILL)  # somewhere in the middle of a write
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.stdout.close()

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = LabelStore(path)
    frames = store.labelled()
    assert len(frames) >= reported + 1  # every reported commit is there
    for i, atoms in enumerate(frames):  # and every row reads back whole
        assert atoms.info["iteration"] == i and atoms.get_potential_energy() == float(i)
        np.testing.assert_allclose(atoms.get_forces(), i * 1e-3)
        np.testing.assert_allclose(atoms.get_stress(), i * 1e-4)
    assert len(set(store.statuses())) == len(frames)
    # the store takes new writes at once (no stale lock left by the killed writer)
    extra = helpers.water(seed=1)
    store.add_label(_result(extra, 1.0), structure_key(extra), {"iteration": 99, "oracle": "x"})
    assert store.count("ok") == len(frames) + 1
