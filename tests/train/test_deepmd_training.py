"""Training from a deepmd/npy copy of a data set gives the same model as from the extxyz."""

import ase.io
import torch

import mlff
from mlff.data.deepmd import write_deepmd_dir
from mlff.train.trainer import train

from .conftest import small_config


def test_deeppot_trained_from_deepmd_dir_equals_extxyz(tmp_path, ethanol_small):
    deepmd = tmp_path / "ethanol-deepmd"
    write_deepmd_dir(ase.io.read(ethanol_small, ":"), deepmd)
    models = []
    for source, name in ((ethanol_small, "xyz"), (deepmd, "npy")):
        config = small_config(source, max_epochs=2)
        config["model"] = {"architecture": "deeppot", "cutoff": 4.0, "rcut_smth": 1.0,
                           "embedding_neurons": [4, 8], "axis_neurons": 4,
                           "fitting_neurons": [16, 16]}
        result = train(config, out_dir=tmp_path / name, progress=False)
        models.append(mlff.load_model(result.model_path))
    xyz, npy = (dict(m.named_parameters()) for m in models)
    assert xyz.keys() == npy.keys()
    for key in xyz:
        torch.testing.assert_close(npy[key], xyz[key], rtol=0, atol=1e-12, msg=key)
