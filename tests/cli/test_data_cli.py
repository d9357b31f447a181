"""``mlff data pack|info|split`` run as a user would (a subprocess)."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest

from mlff.data import GraphDataset, PackedDataset
from tests import helpers
from tests.cli.test_cli import assert_user_error, mlff


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two extxyz files: 4 labelled molecules in two config_types, and 3 Cu cells."""
    folder = tmp_path_factory.mktemp("inputs")
    molecules = []
    for i, atoms in enumerate([helpers.ethanol(seed=1), helpers.water(seed=2),
                               helpers.water(seed=3), helpers.ethanol(seed=4)]):
        frame = helpers.with_random_labels(atoms, seed=i)
        frame.info["config_type"] = "ethanol" if len(atoms) == 9 else "water"
        molecules.append(frame)
    metals = [helpers.with_random_labels(helpers.copper(seed=10 + i), seed=10 + i)
              for i in range(3)]
    first, second = folder / "molecules.xyz", folder / "metals.xyz"
    ase.io.write(first, molecules, format="extxyz")
    ase.io.write(second, metals, format="extxyz")
    return first, second


def test_pack_info_split(inputs, tmp_path):
    first, second = inputs
    out = tmp_path / "data.h5"
    result = mlff("data", "pack", first, second, "--out", out, "--cutoff", "3.5")
    assert result.returncode == 0, result.stderr
    assert "packed 7 structures" in result.stdout and "data.h5" in result.stdout
    packed = PackedDataset(out)
    assert len(packed) == 7 and packed.cutoff == 3.5
    assert packed.config_types == ["Default", "ethanol", "water"]

    info = mlff("data", "info", out, "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["structures"] == 7 and summary["atoms"] == 9 + 3 + 3 + 9 + 3 * 4
    assert summary["elements"] == {"H": 16, "C": 4, "O": 4, "Cu": 12}
    assert summary["labels"] == {"energy": 7, "forces": 7, "stress": 3}
    assert summary["config_types"] == {"Default": 3, "ethanol": 2, "water": 2}
    assert [s["frames"] for s in summary["sources"]] == [4, 3]
    assert summary["cutoff"] == 3.5
    reference = GraphDataset.from_file(first, cutoff=3.5)
    edges = sum(g["edge_index"].shape[1] for g in reference)
    edges += sum(g["edge_index"].shape[1] for g in GraphDataset.from_file(second, cutoff=3.5))
    assert summary["mean_neighbors"] == pytest.approx(edges / summary["atoms"])

    table = mlff("data", "info", first, "--cutoff", "3.5")  # an ASE file, as a table
    assert table.returncode == 0, table.stderr
    for text in ("structures", "ethanol (2)", "water (2)", "energy 4/4", "stress 0/4",
                 "molecules.xyz"):
        assert text in table.stdout, text

    split = mlff("data", "split", out, "--valid-fraction", "0.3", "--test-fraction", "0.2",
                 "--seed", "5", "--out-dir", tmp_path / "split")
    assert split.returncode == 0, split.stderr
    parts = {name: np.loadtxt(tmp_path / "split" / f"{name}_indices.txt", dtype=np.int64,
                              ndmin=1).tolist() for name in ("train", "valid", "test")}
    assert [len(parts[n]) for n in ("train", "valid", "test")] == [4, 2, 1]
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(7))
    again = mlff("data", "split", first, "--valid-fraction", "0.5", "--out-dir", tmp_path / "plain")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["train_indices.txt",
                                                                     "valid_indices.txt"]


def test_bad_inputs_are_clean_errors(inputs, tmp_path):
    first, _ = inputs
    assert_user_error(mlff("data", "pack", tmp_path / "missing.xyz", "--out", tmp_path / "x.h5",
                           "--cutoff", "3"), "missing.xyz", "no such file")
    assert not (tmp_path / "x.h5").exists()
    garbage = tmp_path / "garbage.h5"
    garbage.write_text("this is not HDF5\n")
    assert_user_error(mlff("data", "info", garbage), "garbage.h5", "packed data set")
    assert_user_error(mlff("data", "split", first, "--valid-fraction", "0.9",
                           "--test-fraction", "0.5", "--out-dir", tmp_path / "s"),
                      "cannot be split")
