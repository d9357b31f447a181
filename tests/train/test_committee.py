import json

import numpy as np
import pytest
import torch

from mlff import load_model, train
from mlff.errors import ConfigError
from mlff.train.config import validate_config
from mlff.train.data import load_training_data
from mlff.uq import Committee
from mlff.train.committee import member_config
from tests.train.conftest import small_config


def _config(data, **committee):
    config = small_config(data, max_epochs=2)
    config["committee"] = {"size": 2, "processes": 1, **committee}
    return config


def test_committee_training_writes_a_calibrated_committee(tmp_path, cu_emt):
    result = train(_config(cu_emt, bootstrap=True), out_dir=tmp_path / "run", progress=False)
    committee = load_model(result.model_path)
    assert isinstance(committee, Committee) and committee.size == 2
    assert committee.calibration["method"] == "scale"  # 3 validation structures: too few for more
    report = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert report["valid"]["num_structures"] == 3 and report["calibration"]["method"] == "scale"
    assert (tmp_path / "run" / "calibration.png").stat().st_size > 10_000
    a, b = (dict(m.named_parameters()) for m in committee.members)
    assert any(not torch.equal(a[name], b[name]) for name in a)  # different seeds
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["valid"]["forces_mae_meV_per_A"] > 0


def test_members_get_their_seed_and_bootstrap_resample(cu_emt):
    config = validate_config(_config(cu_emt, bootstrap=True))
    first, second = member_config(config, 0), member_config(config, 1)
    assert (first.seed, second.seed) == (1, 2) and first.committee is None
    train0, train1 = load_training_data(first).train, load_training_data(second).train
    assert len(train0) == len(train1) == 9
    assert train0.sources != train1.sources  # resampled differently
    assert len(set(train0.sources)) < 9  # with replacement
    plain = member_config(validate_config(_config(cu_emt)), 1)
    assert plain.data.bootstrap_seed is None


def test_resume_skips_finished_members_and_refuses_to_overwrite(tmp_path, cu_emt):
    out = tmp_path / "run"
    train(_config(cu_emt), out_dir=out, progress=False)
    stamp = (out / "member_0" / "model.mlff").stat().st_mtime_ns
    with pytest.raises(ConfigError, match="resume=True"):
        train(_config(cu_emt), out_dir=out, progress=False)
    (out / "member_1" / "model.mlff").unlink()  # as if killed before member 1 finished
    train(_config(cu_emt), out_dir=out, resume=True, progress=False)
    assert (out / "member_0" / "model.mlff").stat().st_mtime_ns == stamp
    assert (out / "member_1" / "model.mlff").exists()


def test_parallel_members_equal_sequential_members(tmp_path, cu_emt):
    sequential = train(_config(cu_emt), out_dir=tmp_path / "seq", progress=False)
    config = _config(cu_emt, processes=2)
    config["threads"] = 1
    parallel = train(config, out_dir=tmp_path / "par", progress=False)
    for a, b in zip(load_model(sequential.model_path).members, load_model(parallel.model_path).members):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-12, err_msg=name)


def test_member_settings_are_merged_into_their_members(cu_emt):
    members = [{}, {"training": {"lr": 0.002, "loss": {"forces_weight": 5.0}}}]
    config = validate_config(_config(cu_emt, size=3, members=members))
    first, second, third = (member_config(config, k) for k in range(3))
    assert second.training.lr == 0.002 and second.training.loss.forces_weight == 5.0
    # the rest of the nested section is kept, and entries repeat modulo their number
    assert second.training.loss.energy_weight == config.training.loss.energy_weight
    assert second.training.max_epochs == config.training.max_epochs
    assert first.training == third.training == config.training
    assert [m.seed for m in (first, second, third)] == [1, 2, 3]


def test_member_settings_that_change_nothing_are_refused(tmp_path, cu_emt):
    with pytest.raises(ConfigError, match="only empty entries"):
        validate_config(_config(cu_emt, members=[{}, {}]))
    with pytest.raises(ConfigError, match="would never be used"):
        validate_config(_config(cu_emt, members=[{}, {}, {"training": {"lr": 1.0}}]))
    with pytest.raises(ConfigError, match="seed is always seed"):
        validate_config(_config(cu_emt, members=[{"seed": 5}]))
    config = _config(cu_emt)
    same = {"training": {"lr": config["training"]["lr"]}}
    with pytest.raises(ConfigError, match="repeats the config's own settings"):
        train(_config(cu_emt, members=[same]), out_dir=tmp_path / "run", progress=False)


def test_a_bad_member_setting_names_its_entry(cu_emt):
    config = validate_config(_config(cu_emt, members=[{"training": {"lr": -1}}]))
    with pytest.raises(ConfigError, match=r"committee.members\[0\]"):
        member_config(config, 0)


def test_member_files_are_found_next_to_the_config(tmp_path, cu_emt):
    import yaml

    from mlff.train.config import load_config

    raw = _config(cu_emt, members=[{}, {"finetune": {"init_from": "m.mlff",
                                                     "replay": {"structures": "pool.xyz"}}}])
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(raw))
    member = load_config(tmp_path / "train.yaml").committee.members[1]["finetune"]
    assert member["init_from"] == str(tmp_path / "m.mlff")
    assert member["replay"]["structures"] == str(tmp_path / "pool.xyz")
