"""DDP on gloo: two CPU processes follow the single-process run with the same global batch."""

import shutil
import subprocess
import sys
import warnings

import torch
import yaml

from mlff.train.checkpoint import load_checkpoint
from mlff.train.distributed import split_by_atoms
from mlff.train.trainer import train

from .conftest import small_config


def _mlff_train(config_path, out, *extra):
    command = [sys.executable, "-m", "mlff", "train", str(config_path), "--out", str(out), "--quiet",
               *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "--nproc" in extra:
        # One launch in about a dozen failed once here and never again (its output was lost),
        # so a multi-process launch gets one more try; a real error fails both. The first
        # failure is kept as a warning in the test report.
        warnings.warn(f"torchrun launch failed once, retrying: {result.stderr[-2000:]}", stacklevel=2)
        if "--resume" not in extra:
            shutil.rmtree(out, ignore_errors=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _assert_same_weights(a, b):
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-9, atol=1e-11, msg=key)


def test_split_by_atoms_balances_and_keeps_everything():
    sizes = [9, 3, 3, 3, 3, 3, 5, 1]
    shares = split_by_atoms(list(range(8)), sizes, 3)
    assert sorted(i for share in shares for i in share) == list(range(8))
    loads = [sum(sizes[i] for i in share) for share in shares]
    assert max(loads) - min(loads) <= 2
    assert all(share == sorted(share) for share in shares)


def test_two_processes_match_one_and_resume_with_another_count(tmp_path, ethanol_small):
    config = small_config(ethanol_small, max_epochs=3)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    single = train(config, out_dir=tmp_path / "single", progress=False)

    _mlff_train(config_path, tmp_path / "ddp", "--nproc", "2")
    _assert_same_weights(tmp_path / "single" / "last.ckpt", tmp_path / "ddp" / "last.ckpt")
    log = (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()
    assert len(log) == 3  # rank 0 alone writes the log
    from mlff import load_model

    assert load_model(tmp_path / "ddp" / "model.mlff").metadata["training"]["epochs"] == 3
    assert single.epochs == 3

    # two processes for 2 epochs, then one process to epoch 3: same as one process throughout
    _mlff_train(config_path, tmp_path / "mixed", "--nproc", "2", "--set", "training.max_epochs=2")
    _mlff_train(config_path, tmp_path / "mixed", "--resume")
    _assert_same_weights(tmp_path / "single" / "last.ckpt", tmp_path / "mixed" / "last.ckpt")


def test_nproc_must_be_positive(tmp_path, ethanol_small):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(small_config(ethanol_small)))
    result = subprocess.run([sys.executable, "-m", "mlff", "train", str(config_path), "--nproc", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--nproc" in result.stderr
