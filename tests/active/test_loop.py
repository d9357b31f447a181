import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import ase.io
import pytest
import yaml

from mlff import load_model
from mlff.active.config import validate_learn_config
from mlff.active.loop import learn
from mlff.active.store import LabelStore
from mlff.errors import ConfigError
from mlff.models.io import read_metadata
from mlff.uq import Committee
from tests.active.conftest import learn_config

ROOT = Path(__file__).resolve().parents[2]


def _ok_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM text_key_values "
                                      "WHERE key='status' AND value='ok'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_learn_loop_labels_retrains_and_reports(tmp_path, cu_cells):
    result = learn(validate_learn_config(learn_config(*cu_cells)), tmp_path / "run", progress=False)
    assert [s["iteration"] for s in result.summaries] == [1, 2]
    store = LabelStore(tmp_path / "run" / "labels.db")
    assert store.count("ok") == 3 + 2 + 2  # initial + max_labels per iteration
    assert {a.info["iteration"] for a in store.labelled()} == {0, 1, 2}
    first, second = result.summaries
    assert first["train_labels"] == 3 and second["train_labels"] == 5
    assert first["test"]["forces_mae_meV_per_A"] > 0
    assert isinstance(load_model(result.model_path), Committee)
    made = read_metadata(result.model_path)["active_learning"]  # how it was made, for mlff info
    assert made["labels"] == 7 and made["iterations"] == 2 and made["oracle"] == "emt"
    assert made["committee"] in ("final", "iteration 2") and made["explore"]["walkers"] == 2
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| 2 | 5 |" in report and "iter_002/uncertainty.png" in report
    assert (tmp_path / "run" / "iter_002" / "uncertainty.png").stat().st_size > 5000
    # iteration 2 was warm-started from iteration 1's members
    member = yaml.safe_load((tmp_path / "run" / "iter_002" / "train" / "member_1" / "config.yaml")
                            .read_text())
    assert member["finetune"]["init_from"].endswith("iter_001/train/member_1/model.mlff")


def test_watchdog_stops_walkers_and_nothing_is_selected(tmp_path, cu_cells):
    config = learn_config(*cu_cells, select={"lower": 1e-6, "upper": 2e-6},
                          stop={"max_iterations": 1})
    result = learn(validate_learn_config(config), tmp_path / "run", progress=False)
    summary = result.summaries[0]
    assert summary["walkers_stopped"] == 2
    assert summary["explored_frames"] == 2  # each walker stopped at its first sample
    assert summary["failed_fraction"] == 1.0 and summary["selected"] == 0


def test_random_strategy_labels_the_same_number(tmp_path, cu_cells):
    config = learn_config(*cu_cells, select={"strategy": "random"}, stop={"max_iterations": 1})
    result = learn(validate_learn_config(config), tmp_path / "run", progress=False)
    assert result.summaries[0]["labelled"] == 2


def test_config_errors_name_the_key(cu_cells):
    with pytest.raises(ConfigError, match="committee"):
        validate_learn_config(learn_config(*cu_cells, train={"committee": None}))
    with pytest.raises(ConfigError, match="select.lower|upper"):
        validate_learn_config(learn_config(*cu_cells, select={"lower": 0.5, "upper": 0.1}))
    with pytest.raises(ConfigError, match="unknown key 'explore.walker'"):
        validate_learn_config(learn_config(*cu_cells, explore={"walker": 3}))


def test_sigkill_during_labelling_loses_and_repeats_nothing(tmp_path, cu_cells):
    log = tmp_path / "oracle_calls.log"
    oracle = {"type": "ase", "calculator": "tests.active.counting_emt:CountingEMT",
              "kwargs": {"log": str(log), "delay": 0.4}}
    config = learn_config(*cu_cells, oracle=oracle, select={"max_labels": 3})
    path = tmp_path / "learn.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mlff", "learn", str(path), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 240
    while _ok_rows(out / "labels.db") < 4 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # 3 initial labels, then the first label of iteration 1
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_with = _ok_rows(out / "labels.db")
    assert 4 <= killed_with < 6

    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=300)
    store = LabelStore(out / "labels.db")
    keys = [a.info["structure_key"] for a in store.labelled()]
    assert len(keys) == len(set(keys)) == 3 + 3 + 3
    calls = Counter(log.read_text().split())
    repeated = [k for k, n in calls.items() if n > 1]
    assert not repeated, f"oracle called again for labelled structures: {repeated}"
    assert set(keys) <= set(calls)


def test_worse_than_compares_energy_and_force_errors():
    from mlff.active.loop import worse_than

    previous = {"energy_mae_meV_per_atom": 13.9, "forces_mae_meV_per_A": 100.0}
    reason = worse_than({"energy_mae_meV_per_atom": 161.0, "forces_mae_meV_per_A": 110.0}, previous)
    assert reason == "E MAE 161 meV/atom against 13.9, F MAE 110 meV/Å against 100"
    assert worse_than({"energy_mae_meV_per_atom": 12.0, "forces_mae_meV_per_A": 90.0}, previous) is None
    assert worse_than(None, previous) is None and worse_than(previous, None) is None


def test_final_training_is_named_final_and_a_worse_one_is_not_kept(tmp_path, cu_cells, capsys):
    import torch

    from mlff.uq.io import save_committee

    config = validate_learn_config(learn_config(*cu_cells, stop={"max_iterations": 1}))
    out = tmp_path / "run"
    learn(config, out, progress=True)
    printed = capsys.readouterr().out
    assert "final: training a committee" in printed and "iteration 2" not in printed
    assert (out / "final" / "train" / "model.mlff").exists()
    # a final committee far worse than iteration 1's: iteration 1's with scrambled weights
    bad = load_model(out / "iter_001" / "train" / "model.mlff")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in bad.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator,
                                       dtype=parameter.dtype))
    save_committee(bad, out / "final" / "train" / "model.mlff")
    (out / "final" / "final.json").unlink()
    result = learn(config, out, progress=True)  # resumes: only the final comparison is redone
    printed = capsys.readouterr().out
    assert "is worse on the test set" in printed and "model.mlff is iteration 1's" in printed
    kept = load_model(out / "iter_001" / "train" / "model.mlff").state_dict()
    final = load_model(result.model_path).state_dict()
    assert final.keys() == kept.keys()
    assert all(torch.equal(final[name], kept[name]) for name in kept)
    assert read_metadata(result.model_path)["active_learning"]["committee"] == "iteration 1"
    report = (out / "report.md").read_text()
    assert "was worse on the test set" in report and "iteration 1's committee" in report
