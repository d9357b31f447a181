"""The .mlff model file: contents, round trip, and every way a bad file is refused."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from mlff.errors import MLFFError, ModelFileError
from mlff.models import read_metadata, save_model
from mlff.models.io import FORMAT_VERSION, METADATA_NAME, WEIGHTS_NAME
from mlff.uq.io import load_model
from tests import helpers


@pytest.fixture
def model_file(tmp_path):
    potential = helpers.build_potential("schnet", scale=1.5, shift=-0.25)
    potential.metadata = {"data_fingerprint": "abc123", "test_metrics": {"energy_mae": 0.1}}
    return save_model(potential, tmp_path / "model.mlff")


def rewrite(src, dst, metadata=None, weights=None, drop=()):
    """Copy a model file, replacing its metadata/weights or dropping members."""
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if metadata is not None:
        members[METADATA_NAME] = json.dumps(metadata).encode()
    if weights is not None:
        members[WEIGHTS_NAME] = weights
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            if name not in drop:
                archive.writestr(name, data)
    return dst


def test_file_holds_only_json_and_safetensors(model_file):
    with zipfile.ZipFile(model_file) as archive:
        assert sorted(archive.namelist()) == sorted([METADATA_NAME, WEIGHTS_NAME])


def test_metadata_describes_the_model(model_file):
    metadata = read_metadata(model_file)
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["architecture"] == "schnet"
    assert metadata["species"] == list(helpers.SPECIES)
    assert metadata["species_symbols"] == ["H", "C", "O", "Cu"]
    assert metadata["cutoff"] == 4.0
    assert metadata["e0s"] == dict(zip(["H", "C", "O", "Cu"], helpers.E0S))
    assert metadata["scale"] == 1.5 and metadata["shift"] == -0.25
    assert metadata["dtype"] == "float64"
    assert metadata["data_fingerprint"] == "abc123"
    assert metadata["units"]["energy"] == "eV"


def test_load_restores_provenance_and_parameters(model_file):
    loaded = load_model(model_file)
    assert loaded.metadata["data_fingerprint"] == "abc123"
    assert loaded.metadata["test_metrics"] == {"energy_mae": 0.1}
    assert not loaded.training
    original = helpers.build_potential("schnet", scale=1.5, shift=-0.25)
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_as_float32(model_file):
    assert load_model(model_file, dtype=torch.float32).dtype == torch.float32
    loaded = load_model(model_file, dtype="float32")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.e0s.dtype == torch.float64  # reference energies are never rounded


def test_float32_model_keeps_large_e0s_exact(tmp_path):
    """All-electron E0s (thousands of eV) survive float32 models, saving and loading."""
    e0s = [-13.568422383046626, -1025.2770951782686, -2035.5709809589698, -1640.123456789012]
    potential = helpers.build_potential("schnet").to(torch.float32)
    potential.e0s.copy_(torch.tensor(e0s, dtype=torch.float64))
    loaded = load_model(save_model(potential, tmp_path / "m.mlff"), dtype="float32")
    assert loaded.e0s.tolist() == e0s
    assert read_metadata(tmp_path / "m.mlff")["e0s"]["O"] == e0s[2]


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "nothing.mlff")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.mlff"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelFileError, match="not a zip archive") as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, MLFFError)


@pytest.mark.parametrize("missing", [METADATA_NAME, WEIGHTS_NAME])
def test_zip_lacking_members(model_file, tmp_path, missing):
    path = rewrite(model_file, tmp_path / "partial.mlff", drop=(missing,))
    with pytest.raises(ModelFileError, match="not an mlff model file") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_newer_format_version(model_file, tmp_path):
    metadata = read_metadata(model_file)
    metadata["format_version"] = 999
    path = rewrite(model_file, tmp_path / "future.mlff", metadata=metadata)
    with pytest.raises(ModelFileError, match="format 999") as info:
        load_model(path)
    assert "Upgrade mlff" in str(info.value)
    with pytest.raises(ModelFileError):
        read_metadata(path)


def test_corrupt_metadata_json(model_file, tmp_path):
    path = tmp_path / "corrupt.mlff"
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(path, "w") as dst:
        dst.writestr(METADATA_NAME, b"{not json")
        dst.writestr(WEIGHTS_NAME, src.read(WEIGHTS_NAME))
    with pytest.raises(ModelFileError, match="corrupt metadata.json"):
        load_model(path)


@pytest.mark.parametrize(
    "change",
    [
        {"format_version": None},
        {"hyperparameters": None},
        {"dtype": None},
        {"dtype": "float16"},
        {"hyperparameters": {"architecture": "nope", "cutoff": 4.0}},
        {"hyperparameters": {"architecture": "schnet", "num_feature": 3}},
    ],
    ids=["no-version", "no-hyperparameters", "no-dtype", "bad-dtype", "unknown-arch", "bad-key"],
)
def test_metadata_not_describing_a_model(model_file, tmp_path, change):
    metadata = read_metadata(model_file)
    for key, value in change.items():
        if value is None:
            del metadata[key]
        else:
            metadata[key] = value
    path = rewrite(model_file, tmp_path / "bad.mlff", metadata=metadata)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_weights_that_do_not_fit(model_file, tmp_path):
    other = helpers.build_potential("schnet", num_features=8)
    other_file = save_model(other, tmp_path / "other.mlff")
    with zipfile.ZipFile(other_file) as archive:
        weights = archive.read(WEIGHTS_NAME)
    path = rewrite(model_file, tmp_path / "mixed.mlff", weights=weights)
    with pytest.raises(ModelFileError, match="weights do not match the metadata"):
        load_model(path)
    path = rewrite(model_file, tmp_path / "garbled.mlff", weights=b"\x00" * 64)
    with pytest.raises(ModelFileError):
        load_model(path)


def test_save_is_atomic_and_overwrites(model_file, tmp_path):
    potential = helpers.build_potential("painn")
    save_model(potential, model_file)
    assert read_metadata(model_file)["architecture"] == "painn"
    assert [p.name for p in tmp_path.iterdir()] == ["model.mlff"]
