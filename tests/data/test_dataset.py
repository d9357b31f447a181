"""GraphDataset (with its neighbour-list cache) and BatchLoader."""

from __future__ import annotations

import pytest
import torch

import mlff.data.dataset as dataset_module
from mlff.data import BatchLoader, GraphDataset, LabelKeys, read_structures
from mlff.data import keys as K
from mlff.errors import DataError


def assert_same_datasets(a: GraphDataset, b: GraphDataset) -> None:
    assert len(a) == len(b)
    assert a.config_types == b.config_types and a.sources == b.sources
    assert a.fingerprint == b.fingerprint
    for ga, gb in zip(a.graphs, b.graphs):
        assert set(ga) == set(gb)
        for key in ga:
            assert ga[key].dtype == gb[key].dtype, key
            assert torch.equal(ga[key], gb[key]), key


def forbid_rebuilding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the dataset was rebuilt instead of loaded from the cache")

    monkeypatch.setattr(dataset_module, "structure_to_graph", fail)
    monkeypatch.setattr(dataset_module, "read_structures", fail)


def test_from_file(extxyz_file, labelled_frames):
    dataset = GraphDataset.from_file(extxyz_file, cutoff=3.0)
    assert len(dataset) == len(labelled_frames)
    assert dataset.sources[0] == f"{extxyz_file}:0"
    assert len(dataset.fingerprint) == 64
    assert dataset.atomic_numbers == [1, 6, 8, 29]
    assert dataset[3][K.NUM_ATOMS].tolist() == [4]


def test_config_types_are_tagged(tmp_path, labelled_frames):
    import ase.io

    for i, atoms in enumerate(labelled_frames):
        atoms.info["config_type"] = "bulk" if atoms.pbc.all() else "molecule"
    path = tmp_path / "typed.xyz"
    ase.io.write(path, labelled_frames, format="extxyz")
    dataset = GraphDataset.from_file(path, cutoff=3.0)
    assert dataset.config_types == ["bulk", "molecule"]
    assert [int(g[K.CONFIG_TYPE]) for g in dataset] == [1, 1, 1, 0, 0]


def test_subset_and_slices(extxyz_file):
    dataset = GraphDataset.from_file(extxyz_file, cutoff=3.0)
    subset = dataset.subset([4, 0])
    assert subset.sources == [dataset.sources[4], dataset.sources[0]]
    assert subset[0] is dataset[4]
    sliced = dataset[1:3]
    assert isinstance(sliced, GraphDataset) and sliced.sources == dataset.sources[1:3]


def test_second_load_comes_from_the_cache(extxyz_file, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = GraphDataset.from_file(extxyz_file, cutoff=3.0, cache_dir=cache)
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("frames-")
    forbid_rebuilding(monkeypatch)
    second = GraphDataset.from_file(extxyz_file, cutoff=3.0, cache_dir=cache)
    assert_same_datasets(first, second)


def test_corrupt_cache_is_rebuilt(extxyz_file, tmp_path):
    cache = tmp_path / "cache"
    first = GraphDataset.from_file(extxyz_file, cutoff=3.0, cache_dir=cache)
    (cache_file,) = cache.glob("*.safetensors")
    cache_file.write_bytes(b"\x00garbage" * 10)
    rebuilt = GraphDataset.from_file(extxyz_file, cutoff=3.0, cache_dir=cache)
    assert_same_datasets(first, rebuilt)
    assert cache_file.stat().st_size > 100  # rewritten


def test_truncated_cache_is_rebuilt(extxyz_file, tmp_path):
    cache = tmp_path / "cache"
    first = GraphDataset.from_file(extxyz_file, cutoff=3.0, cache_dir=cache)
    (cache_file,) = cache.glob("*.safetensors")
    data = cache_file.read_bytes()
    cache_file.write_bytes(data[: len(data) // 2])
    assert_same_datasets(first, GraphDataset.from_file(extxyz_file, cutoff=3.0, cache_dir=cache))


@pytest.mark.parametrize("change", ["cutoff", "keys", "content"])
def test_cache_key_changes(extxyz_file, tmp_path, change):
    cache = tmp_path / "cache"
    GraphDataset.from_file(extxyz_file, cutoff=3.0, cache_dir=cache)
    cutoff, keys = 3.0, LabelKeys()
    if change == "cutoff":
        cutoff = 3.5
    elif change == "keys":
        keys = LabelKeys(energy="REF_energy")
    else:
        text = extxyz_file.read_text()
        extxyz_file.write_text(text + text)  # same name, new content
    dataset = GraphDataset.from_file(extxyz_file, cutoff=cutoff, keys=keys, cache_dir=cache)
    assert len(list(cache.glob("*.safetensors"))) == 2
    fresh = GraphDataset.from_file(extxyz_file, cutoff=cutoff, keys=keys)
    assert_same_datasets(dataset, fresh)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        GraphDataset.from_file(tmp_path / "nope.xyz", cutoff=3.0, cache_dir=tmp_path)


def test_require_is_checked(extxyz_file):
    with pytest.raises(DataError, match="no stress label"):
        GraphDataset.from_file(extxyz_file, cutoff=3.0, require=("stress",))


def test_from_structures(extxyz_file):
    structures = read_structures(extxyz_file)
    dataset = GraphDataset.from_structures(structures, cutoff=3.0)
    assert len(dataset) == 5 and dataset.fingerprint == ""


def energies_in(batches) -> list[float]:
    return [round(float(e), 6) for batch in batches for e in batch[K.ENERGY]]


def test_batch_loader(extxyz_file):
    dataset = GraphDataset.from_file(extxyz_file, cutoff=3.0)
    energies = [round(float(g[K.ENERGY]), 6) for g in dataset]
    assert len(set(energies)) == len(energies)
    loader = BatchLoader(dataset, batch_size=2, shuffle=True, seed=3)
    assert len(loader) == 3
    orders = [energies_in(loader.batches(epoch)) for epoch in range(4)]
    for order in orders:
        assert sorted(order) == sorted(energies)  # every structure once per epoch
    assert len({tuple(o) for o in orders}) > 1  # epochs are shuffled differently
    # the order depends only on (seed, epoch): a new loader (a resumed run) agrees
    again = BatchLoader(dataset, batch_size=2, shuffle=True, seed=3)
    assert energies_in(again.batches(2)) == orders[2]
    plain = BatchLoader(dataset, batch_size=2, shuffle=False)
    assert [b[K.NUM_ATOMS].shape[0] for b in plain] == [2, 2, 1]
    assert energies_in(plain) == energies


def test_atom_budget_batches_and_workers():
    import torch as _torch
    from ase.build import molecule

    from mlff.data.dataset import BatchLoader, GraphDataset
    from mlff.data.readers import Structure

    names = ["H2O", "CH4", "C6H6", "CH3CH2OH", "H2", "NH3"] * 3
    dataset = GraphDataset.from_structures([Structure(atoms=molecule(n)) for n in names], 3.0)
    loader = BatchLoader(dataset, batch_size=1, shuffle=True, seed=3, max_atoms=14)
    batches = loader.index_batches(2)
    assert sorted(i for b in batches for i in b) == list(range(len(names)))
    for batch in batches:
        atoms = sum(len(molecule(names[i])) for i in batch)
        assert atoms <= 14 or len(batch) == 1
    # greedy: a batch stops only when the next structure would not fit
    for batch, following in zip(batches, batches[1:]):
        assert sum(loader.sizes[i] for i in batch) + loader.sizes[following[0]] > 14
    assert len(loader) == len(loader.index_batches(0))
    # the same batches come out of worker processes
    direct = list(loader.batches(2))
    loader.num_workers = 2
    for a, b in zip(direct, loader.batches(2), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert _torch.equal(a[key], b[key]), key
