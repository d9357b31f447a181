"""Packed HDF5 data sets: round trip, lazy reads, the chunked shuffle loader, bounded memory,
and training from a packed file."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
import tracemalloc
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

import mlff
from mlff.data import BatchLoader, GraphDataset, collate, read_structures
from mlff.data import keys as K
from mlff.data.dataset import file_fingerprint
from mlff.data.packed import ChunkedShuffleLoader, PackedDataset, pack
from mlff.data.statistics import summarize
from mlff.errors import ConfigError, DataError
from tests import helpers
from tests.train.conftest import small_config

ETHANOL = Path(__file__).resolve().parents[2] / "examples" / "ethanol"


def assert_same_graph(a: dict, b: dict) -> None:
    assert set(a) == set(b), set(a) ^ set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


def _frames_a() -> list[Atoms]:
    """Molecules and bulk Cu with labels in two config_types, one frame without labels,
    one isolated atom (no edges) and one mixed-pbc slab."""
    frames = []
    molecules = [helpers.ethanol(seed=1), helpers.water(seed=2), helpers.copper(seed=3),
                 helpers.copper(seed=4), helpers.ethanol(seed=5)]
    for i, atoms in enumerate(molecules):
        frame = helpers.with_random_labels(atoms, seed=i)
        frame.info["config_type"] = "bulk" if atoms.pbc.all() else "molecule"
        frame.info["weight"] = 1.0 + i
        frames.append(frame)
    frames.append(helpers.water(seed=6))  # no labels at all
    single = Atoms("O", positions=[[0, 0, 0]])
    single.calc = SinglePointCalculator(single, energy=-2.0)
    frames.append(single)
    slab = helpers.with_random_labels(helpers.copper(seed=7), seed=7, stress=False)
    slab.pbc = [True, True, False]
    frames.append(slab)
    return frames


def _frames_b() -> list[Atoms]:
    frames = []
    for i in range(4):
        frame = helpers.with_random_labels(helpers.water(seed=10 + i), seed=10 + i)
        frame.info["config_type"] = "amorphous" if i % 2 else "molecule"
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def two_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    a, b = folder / "a.xyz", folder / "b.extxyz"
    ase.io.write(a, _frames_a(), format="extxyz")
    ase.io.write(b, _frames_b(), format="extxyz")
    return a, b


@pytest.fixture(scope="module")
def packed(two_files, tmp_path_factory) -> Path:
    # chunk_size 3: several incremental writes, one of them partial
    out = tmp_path_factory.mktemp("packed") / "data.h5"
    return pack(list(two_files), out, cutoff=3.0, chunk_size=3)


@pytest.fixture(scope="module")
def reference(two_files) -> GraphDataset:
    a, b = two_files
    return GraphDataset.from_structures(read_structures(a) + read_structures(b), cutoff=3.0)


def test_every_structure_round_trips(packed, reference):
    dataset = PackedDataset(packed)
    assert len(dataset) == len(reference) == 12
    assert dataset.config_types == reference.config_types
    assert dataset.config_types == ["Default", "amorphous", "bulk", "molecule"]
    assert list(dataset.sources) == reference.sources
    assert dataset.cutoff == 3.0
    for i in range(len(dataset)):
        assert_same_graph(dataset[i], reference[i])
        assert dataset.num_atoms(i) == int(reference[i][K.NUM_ATOMS][0])
    for graph, expected in zip(dataset, reference, strict=True):  # iteration reads ranges
        assert_same_graph(graph, expected)
    memory = dataset.to_memory()
    assert memory.sources == reference.sources and memory.config_types == reference.config_types
    for graph, expected in zip(memory, reference, strict=True):
        assert_same_graph(graph, expected)
    assert dataset[6][K.EDGE_INDEX].shape == (2, 0)  # the isolated atom
    assert dataset.atomic_numbers == [1, 6, 8, 29]
    assert dataset.atom_counts().tolist() == [int(g[K.NUM_ATOMS][0]) for g in reference]


def test_metadata_names_the_sources(packed, two_files):
    dataset = PackedDataset(packed)
    a, b = two_files
    assert [f["path"] for f in dataset.files] == [str(a), str(b)]
    assert [f["frames"] for f in dataset.files] == [8, 4]
    assert [f["sha256"] for f in dataset.files] == [file_fingerprint(a), file_fingerprint(b)]
    joined = "\n".join([file_fingerprint(a), file_fingerprint(b)])
    assert dataset.fingerprint == hashlib.sha256(joined.encode()).hexdigest()
    with h5py.File(packed) as handle:
        assert handle.attrs["format"] == "mlff-packed" and handle.attrs["format_version"] == 1
        assert json.loads(handle.attrs["label_keys"])["energy"] == "energy"
        assert handle[K.POSITIONS].chunks is not None and handle[K.POSITIONS].maxshape[0] is None
        assert handle["atom_offset"][-1] + handle[K.NUM_ATOMS][-1] == handle[K.POSITIONS].shape[0]
    assert dataset.source(9) == f"{b}:1"


def test_one_file_has_the_fingerprint_of_its_graph_dataset(two_files, tmp_path):
    a, _ = two_files
    dataset = PackedDataset(pack([a], tmp_path / "a.h5", cutoff=3.0))
    expected = GraphDataset.from_file(a, cutoff=3.0)
    assert dataset.fingerprint == expected.fingerprint
    assert dataset.config_types == expected.config_types


def test_indexing_subsets_and_collated_reads(packed, reference):
    dataset = PackedDataset(packed)
    assert_same_graph(dataset[-1], reference[11])
    with pytest.raises(IndexError):
        dataset[12]
    view = dataset.subset([9, 2, 5, 2])
    assert len(view) == 4 and view.source(0) == reference.sources[9]
    assert_same_graph(view[3], reference[2])
    inner = view[1:3]
    assert isinstance(inner, PackedDataset) and len(inner) == 2
    assert_same_graph(inner[1], reference[5])
    positions = [11, 0, 3, 3, 7]
    expected = collate([reference[i] for i in positions])
    assert_same_graph(dataset.collated(positions), expected)
    # BatchLoader (evaluation, align_energy_offset) works on a packed dataset too
    batches = list(BatchLoader(dataset, 5, shuffle=False).batches())
    assert_same_graph(batches[1], collate([reference[i] for i in range(5, 10)]))


def _read_energy(index: int) -> float:
    return float(_FORKED[index][K.ENERGY][0])


_FORKED: PackedDataset | None = None


def test_survives_pickle_and_fork(packed):
    global _FORKED
    dataset = PackedDataset(packed)
    expected = [float(g[K.ENERGY][0]) for g in dataset]  # the handle is open in this process
    clone = pickle.loads(pickle.dumps(dataset.subset([3, 4])))
    assert float(clone[1][K.ENERGY][0]) == expected[4]
    _FORKED = dataset
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(_read_energy, range(len(dataset))) == expected
    finally:
        _FORKED = None


def test_bad_frame_names_file_and_frame_and_leaves_no_file(two_files, tmp_path):
    a, _ = two_files
    bad = tmp_path / "bad.xyz"
    lines = a.read_text().splitlines()
    bad.write_text("\n".join(lines[:-3]) + "\n")  # the last frame is cut short
    out = tmp_path / "out.h5"
    with pytest.raises(DataError, match=r"bad\.xyz: cannot read frame 7"):
        pack([a, bad], out, cutoff=3.0)
    assert list(tmp_path.iterdir()) == [bad]  # neither the output nor its temporary file
    with pytest.raises(DataError, match=r"a\.xyz:5: no forces label"):
        pack([a], out, cutoff=3.0, require=("forces",))
    with pytest.raises(DataError, match="no such file"):
        pack([tmp_path / "missing.xyz"], out, cutoff=3.0)
    with pytest.raises(ConfigError, match=".h5"):
        pack([a], tmp_path / "out.xyz", cutoff=3.0)


def test_unusable_files_are_data_errors(packed, tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(DataError, match="garbage.h5: cannot read it as a packed data set"):
        PackedDataset(garbage)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = [1, 2]
    with pytest.raises(DataError, match="not an mlff packed data set"):
        PackedDataset(other)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(packed.read_bytes())
    with h5py.File(newer, "r+") as handle:
        handle.attrs["format_version"] = 99
    with pytest.raises(DataError, match="newer than this mlff"):
        PackedDataset(newer)
    with pytest.raises(DataError, match=r"b\.extxyz:0 \(packed in .*\): no stress label"):
        PackedDataset(packed).subset([8, 9]).check_labels(["energy", "stress"])


def test_statistics_stream_over_a_packed_set(packed, reference):
    streamed, in_memory = summarize(PackedDataset(packed), batch_size=4), summarize(reference)
    species = [1, 6, 8, 29]
    expected = in_memory.e0s_least_squares(species)
    assert streamed.e0s_least_squares(species) == pytest.approx(expected)
    e0s = {1: -1.0, 6: -2.0, 8: -3.0, 29: -4.0}
    assert streamed.energy_shift(e0s) == pytest.approx(in_memory.energy_shift(e0s))
    assert streamed.per_atom_energy_std(e0s) == pytest.approx(in_memory.per_atom_energy_std(e0s))
    assert streamed.force_rms() == pytest.approx(in_memory.force_rms())
    assert streamed.mean_num_neighbors() == pytest.approx(in_memory.mean_num_neighbors())
    # the per-graph definitions
    values = [(float(g[K.ENERGY][0]) - sum(e0s[z] for z in g[K.ATOMIC_NUMBERS].tolist()))
              / len(g[K.POSITIONS]) for g in reference if bool(g[K.HAS_ENERGY][0])]
    assert streamed.energy_shift(e0s) == pytest.approx(np.mean(values))
    assert streamed.per_atom_energy_std(e0s) == pytest.approx(np.std(values, ddof=1))


# --- the chunked shuffle loader ------------------------------------------------------------
@pytest.fixture(scope="module")
def molecules(tmp_path_factory) -> PackedDataset:
    """103 labelled molecules of 3 and 9 atoms (an odd size: partial chunks and batches)."""
    molecules = [helpers.water(seed=i) if i % 3 else helpers.ethanol(seed=i) for i in range(103)]
    frames = [helpers.with_random_labels(atoms, seed=i) for i, atoms in enumerate(molecules)]
    path = tmp_path_factory.mktemp("molecules") / "molecules.xyz"
    ase.io.write(path, frames, format="extxyz")
    return PackedDataset(pack([path], path.with_suffix(".h5"), cutoff=3.0, chunk_size=16))


def _energies(batches) -> list[float]:
    return [float(e) for batch in batches for e in batch[K.ENERGY]]


def test_loader_covers_every_structure_once_per_epoch(molecules):
    energies = [float(g[K.ENERGY][0]) for g in molecules]
    assert len(set(energies)) == len(energies)
    loader = ChunkedShuffleLoader(molecules, batch_size=8, seed=3, chunk_structures=10)
    assert len(loader) == 13
    orders = []
    for epoch in range(3):
        order = loader.order(epoch)
        assert sorted(order.tolist()) == list(range(103))
        batches = list(loader.batches(epoch))
        assert len(batches) == len(loader)
        assert _energies(batches) == [energies[i] for i in order]  # every structure once, in order
        assert_same_graph(batches[4], collate([molecules[i] for i in order[32:40]]))
        # the order visits chunks: each a shuffled contiguous range of 10 (3 for the last)
        chunks = list(loader.chunks(epoch))
        assert np.concatenate(chunks).tolist() == order.tolist()
        assert sorted(len(c) for c in chunks) == [3] + [10] * 10
        for chunk in chunks:
            assert np.sort(chunk).tolist() == list(range(chunk.min(), chunk.min() + len(chunk)))
        assert any(chunk.tolist() != sorted(chunk.tolist()) for chunk in chunks)
        orders.append(order.tolist())
    assert orders[0] != orders[1] != orders[2]


def test_loader_order_depends_only_on_seed_and_epoch(molecules):
    first = ChunkedShuffleLoader(molecules, batch_size=8, seed=3, chunk_structures=10)
    list(first.batches(0))
    again = ChunkedShuffleLoader(molecules, batch_size=8, seed=3, chunk_structures=10)
    assert _energies(again.batches(2)) == _energies(first.batches(2))  # a resumed run agrees
    other_seed = ChunkedShuffleLoader(molecules, batch_size=8, seed=4, chunk_structures=10)
    assert other_seed.order(2).tolist() != first.order(2).tolist()
    plain = ChunkedShuffleLoader(molecules, batch_size=8, chunk_structures=10, shuffle=False)
    assert plain.order(5).tolist() == list(range(103))


def test_loader_atom_budget_and_subsets(molecules):
    loader = ChunkedShuffleLoader(molecules, batch_size=1, seed=1, chunk_structures=16,
                                  max_atoms=20)
    index_batches = loader.index_batches(1)
    batches = list(loader.batches(1))
    assert len(batches) == len(index_batches)
    for indices, batch in zip(index_batches, batches, strict=True):
        assert int(batch[K.NUM_ATOMS].sum()) <= 20
        assert batch[K.NUM_ATOMS].tolist() == [molecules.num_atoms(i) for i in indices]
    subset = molecules.subset(range(0, 103, 2))  # gaps: read as ranges, the rest dropped
    loader = ChunkedShuffleLoader(subset, batch_size=5, seed=2, chunk_structures=7)
    expected = [float(subset[i][K.ENERGY][0]) for i in loader.order(0)]
    assert _energies(loader.batches(0)) == expected


@pytest.fixture(scope="module")
def ethanol_2000(tmp_path_factory) -> PackedDataset:
    """The shipped ethanol training and test sets, 2000 structures, packed."""
    out = tmp_path_factory.mktemp("ethanol") / "ethanol.h5"
    return PackedDataset(pack([ETHANOL / "train.xyz", ETHANOL / "test_MD.xyz"], out, cutoff=4.0))


def test_loader_memory_is_bounded_by_the_window(ethanol_2000):
    dataset = ethanol_2000
    assert len(dataset) == 2000
    # what the whole set takes in memory, measured the same way
    tracemalloc.start()
    try:
        in_memory = dataset.to_memory()
        whole = tracemalloc.get_traced_memory()[0]
        del in_memory
        loader = ChunkedShuffleLoader(dataset, batch_size=16, seed=0, chunk_structures=64)
        for epoch in range(2):
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            count = 0
            for batch in loader.batches(epoch):
                count += int(batch[K.NUM_ATOMS].shape[0])
                del batch
            peak = tracemalloc.get_traced_memory()[1] - baseline
            assert count == 2000
            assert peak < 0.25 * whole, (peak, whole)
    finally:
        tracemalloc.stop()
    assert whole > 2000 * 2000  # > 2 kB per structure: the measurement saw the arrays
    assert loader.peak_held <= 64 + 16


# --- training from a packed file -------------------------------------------------------------
@pytest.fixture(scope="module")
def ethanol_24(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ethanol24")
    xyz = folder / "ethanol24.xyz"
    ase.io.write(xyz, ase.io.read(ETHANOL / "train.xyz", ":24"))
    return xyz, pack([xyz], folder / "ethanol24.h5", cutoff=4.0)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return mlff.load_model(path).state_dict()


def test_train_streaming_from_a_packed_file(ethanol_24, tmp_path):
    _, packed_file = ethanol_24
    config = small_config(packed_file, max_epochs=2)
    config["data"].update(stream=True, chunk_structures=8)
    result = mlff.train(config, out_dir=tmp_path / "stream", progress=False)
    assert result.epochs == 2 and result.model_path.is_file()
    assert len((tmp_path / "stream" / "log.jsonl").read_text().splitlines()) == 2
    assert np.isfinite(result.best_valid_loss)
    metadata = mlff.models.io.read_metadata(result.model_path)
    assert metadata["data_fingerprint"]["train"] == PackedDataset(packed_file).fingerprint
    # resuming a streamed run reaches the weights of an uninterrupted one
    config["training"]["max_epochs"] = 1
    mlff.train(config, out_dir=tmp_path / "resumed", progress=False)
    config["training"]["max_epochs"] = 2
    resumed = mlff.train(config, out_dir=tmp_path / "resumed", resume=True, progress=False)
    for key, value in _weights(result.model_path).items():
        assert torch.equal(value, _weights(resumed.model_path)[key]), key


def test_packed_file_in_memory_trains_like_its_source(ethanol_24, tmp_path):
    xyz, packed_file = ethanol_24
    from_xyz = mlff.train(small_config(xyz, max_epochs=1), out_dir=tmp_path / "xyz",
                          progress=False)
    from_h5 = mlff.train(small_config(packed_file, max_epochs=1), out_dir=tmp_path / "h5",
                         progress=False)
    assert from_h5.best_valid_loss == from_xyz.best_valid_loss
    for key, value in _weights(from_xyz.model_path).items():
        assert torch.equal(value, _weights(from_h5.model_path)[key]), key


def test_packed_training_errors(ethanol_24, tmp_path):
    xyz, packed_file = ethanol_24
    config = small_config(packed_file)
    config["model"]["cutoff"] = 5.0
    with pytest.raises(ConfigError, match="cutoff 4.0 Å, but model.cutoff is 5.0 Å.*Repack"):
        mlff.train(config, out_dir=tmp_path / "a", progress=False)
    config = small_config(xyz)
    config["data"]["stream"] = True
    with pytest.raises(ConfigError, match="data.stream: true needs a packed training set"):
        mlff.train(config, out_dir=tmp_path / "b", progress=False)
    config = small_config(packed_file, loss={"stress_weight": 1.0})
    with pytest.raises(DataError, match="no stress label"):
        mlff.train(config, out_dir=tmp_path / "c", progress=False)
