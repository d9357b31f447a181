"""Training on labels minus D3 (data.dispersion): subtracted once, stored, added back."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import yaml

from mlff.calculators.ase import MLFFCalculator
from mlff.data import dispersion_labels as labels_module
from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.data.dispersion import D3, D3Settings
from mlff.data.dispersion_labels import subtract_dispersion
from mlff.errors import ConfigError, DataError
from mlff.models.io import read_metadata
from mlff.train.config import TrainConfig, load_config
from mlff.train.data import load_training_data
from mlff.train.trainer import train
from mlff.validate.errors import error_metrics, predict

from .conftest import small_config

pytest.importorskip("dftd3")
D3BJ = {"method": "d3bj", "functional": "pbe"}


def _config(path, **dispersion):
    config = small_config(path, max_epochs=2)
    config["data"]["dispersion"] = dispersion or D3BJ
    return config


def test_the_labels_are_the_reference_minus_d3_computed_once(cu_emt, tmp_path, monkeypatch):
    config = _config(cu_emt)
    config["data"]["cache_dir"] = str(tmp_path / "cache")
    config["data"]["valid"] = str(cu_emt)
    data = load_training_data(TrainConfig.model_validate(config))
    d3 = D3(D3Settings(**D3BJ))
    for graph, atoms in zip(data.train.graphs, ase.io.read(cu_emt, ":"), strict=True):
        ref = d3.compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc)
        assert float(graph[K.ENERGY][0]) == pytest.approx(atoms.get_potential_energy() - ref.energy,
                                                          abs=1e-10)
        np.testing.assert_allclose(graph[K.FORCES].numpy(), atoms.get_forces() - ref.forces,
                                   atol=1e-10)
        np.testing.assert_allclose(graph[K.STRESS].numpy().reshape(3, 3),
                                   atoms.get_stress(voigt=False) - ref.stress, atol=1e-12)
    assert len(list((tmp_path / "cache").glob("d3-*.safetensors"))) == 1  # train = valid file

    def fail(*args, **kwargs):
        raise AssertionError("D3 evaluated again instead of read from the cache")

    monkeypatch.setattr(labels_module, "dispersion_labels", fail)
    again = load_training_data(TrainConfig.model_validate(config))
    assert float(again.train.graphs[3][K.ENERGY][0]) == float(data.train.graphs[3][K.ENERGY][0])


def test_trained_model_stores_d3_and_calculators_add_it(cu_emt, tmp_path):
    result = train(_config(cu_emt), out_dir=tmp_path / "run", progress=False)
    metadata = read_metadata(result.model_path)
    assert metadata["dispersion"]["method"] == "d3bj"
    assert metadata["dispersion"]["parameters"]["a1"] == 0.4289
    atoms = ase.io.read(cu_emt, "0")
    with_d3 = MLFFCalculator(result.model_path)
    bare = MLFFCalculator(result.model_path, dispersion=False)
    ref = D3(D3Settings(**D3BJ)).compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc)
    assert with_d3.get_potential_energy(atoms) == pytest.approx(
        bare.get_potential_energy(atoms) + ref.energy, abs=1e-9)


def test_mlff_info_and_evaluate_show_and_use_d3(cu_emt, tmp_path, capsys):
    from mlff.cli.main import main
    from mlff.uq.io import load_model
    from mlff.validate.evaluate import evaluate_file

    result = train(_config(cu_emt), out_dir=tmp_path / "run", progress=False)
    assert main(["info", str(result.model_path)]) == 0
    out = capsys.readouterr().out
    assert "trained on labels minus D3" in out and "d3bj (pbe;" in out
    report = evaluate_file(load_model(result.model_path), cu_emt)["metrics"]["overall"]
    # the model plus D3 against the labels: the errors of the model alone against the
    # labels minus D3, which it was trained on
    bare = load_model(result.model_path)
    bare.metadata = {}
    dataset = subtract_dispersion(GraphDataset.from_file(cu_emt, 4.0), D3Settings(**D3BJ))
    expected = error_metrics(predict(bare, dataset), dataset)["overall"]
    for key in ("energy_rmse_meV", "forces_rmse_meV_per_A", "stress_rmse_meV_per_A3"):
        assert report[key] == pytest.approx(expected[key], rel=1e-9)
    bare_report = evaluate_file(bare, cu_emt)["metrics"]["overall"]
    assert bare_report["energy_rmse_meV"] > report["energy_rmse_meV"] + 100  # D3 is missing


def test_bad_dispersion_settings_in_a_config_file(tmp_path, cu_emt):
    for settings, message in [
        ({"method": "d4", "functional": "pbe"}, "unknown D3 method 'd4'"),
        ({"method": "d3bj", "functional": "pbe", "damping": 1}, "damping"),
    ]:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(_config(cu_emt, **settings)))
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    config = TrainConfig.model_validate(_config(cu_emt, method="d3bj", functional="pbee"))
    with pytest.raises(ConfigError, match="Did you mean pbe"):
        load_training_data(config)


def test_streamed_data_and_elements_without_d3_are_refused(tmp_path, cu_emt):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from mlff.data.packed import pack

    packed = tmp_path / "cu.h5"
    pack([cu_emt], packed, cutoff=4.0)
    config = _config(packed)
    config["data"]["stream"] = True
    with pytest.raises(ConfigError, match="data.dispersion cannot be used with data.stream"):
        load_training_data(TrainConfig.model_validate(config))

    frames = []
    for k in range(4):
        atoms = Atoms("HAm", positions=[[0, 0, 0], [0, 0, 2.0 + 0.1 * k]])
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 * k, forces=np.zeros((2, 3)))
        frames.append(atoms)
    path = tmp_path / "am.xyz"
    ase.io.write(path, frames)
    with pytest.raises(DataError, match=r"am.xyz:\d: atom 1 is Am, which has no D3 parameters"):
        load_training_data(TrainConfig.model_validate(_config(path)))


def test_fine_tuning_must_keep_the_pretrained_models_d3(cu_emt, tmp_path):
    result = train(_config(cu_emt), out_dir=tmp_path / "run", progress=False)
    for dispersion, ok in [(D3BJ, True), (None, False), ({"method": "d3zero", "functional": "pbe"}, False)]:
        config = _config(cu_emt)
        config["data"]["dispersion"] = dispersion
        config["finetune"] = {"init_from": str(result.model_path)}
        config.pop("model")
        config = TrainConfig.model_validate(config)
        if ok:
            assert load_training_data(config).train is not None
        else:
            with pytest.raises(ConfigError, match="differs from the D3 that finetune.init_from"):
                load_training_data(config)


def test_a_committee_trained_with_d3_stores_it(cu_emt, tmp_path):
    from mlff import train as train_any
    from mlff.uq import Committee
    from mlff.uq.io import load_model

    config = _config(cu_emt)
    config["committee"] = {"size": 2, "processes": 1}
    result = train_any(config, out_dir=tmp_path / "committee", progress=False)
    assert read_metadata(result.model_path)["dispersion"]["method"] == "d3bj"
    committee = load_model(result.model_path)
    assert isinstance(committee, Committee)
    assert MLFFCalculator(committee).dispersion is not None
