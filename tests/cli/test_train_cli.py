import subprocess
import sys
from pathlib import Path

import ase.io
import yaml

ETHANOL = Path(__file__).resolve().parents[2] / "examples" / "ethanol"


def mlff(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mlff", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def _config(tmp_path: Path, **model) -> Path:
    data = tmp_path / "eth.xyz"
    ase.io.write(data, ase.io.read(ETHANOL / "train.xyz", ":16"))
    config = {
        "data": {"train": "eth.xyz", "valid_fraction": 0.25, "cache_dir": None,
                 "e0s": str(ETHANOL / "isolated_atoms.xyz")},
        "model": {"architecture": "schnet", "cutoff": 4.0, "num_features": 8, "num_filters": 8,
                  "num_layers": 1, "num_radial": 8, **model},
        "training": {"batch_size": 4, "max_epochs": 2},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_help_describes_outputs():
    result = mlff("train", "--help")
    assert result.returncode == 0
    assert "model.mlff" in result.stdout and "--resume" in result.stdout and "--set" in result.stdout


def test_train_cli_writes_model_and_resumes(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "run"
    result = mlff("train", config, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "model.mlff").is_file() and (out / "config.yaml").is_file()
    again = mlff("train", config, "--out", out, "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    resumed = mlff("train", config, "--out", out, "--resume", "--set", "training.max_epochs=3", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    info = mlff("info", out / "model.mlff")
    assert info.returncode == 0 and "schnet" in info.stdout


def test_train_cli_config_error_is_clean(tmp_path):
    config = _config(tmp_path, num_filterz=3)
    result = mlff("train", config, "--out", tmp_path / "bad")
    assert result.returncode == 2
    assert "model.num_filterz" in result.stderr and "num_filters" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_prints_a_summary_first_and_the_model_path_once(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "run"
    result = mlff("train", config, "--out", out)
    assert result.returncode == 0, result.stderr
    output = result.stderr + result.stdout
    summary = output[:output.index("epoch    1")]  # printed before the first epoch
    for text in ("12 train, 4 valid", "parameters", "device           cpu float32",
                 "thread(s)", "avg_num_neighbors"):
        assert text in summary, (text, summary)
    assert output.count(str(out / "model.mlff")) == 1
    assert result.stdout.strip() == f"model: {out / 'model.mlff'}"
    info = mlff("info", out / "model.mlff")
    assert "eV/Å (force RMS)" in info.stdout and "eV per atom" in info.stdout


def test_a_set_typo_is_reported_against_set(tmp_path):
    config = _config(tmp_path)
    result = mlff("train", config, "--out", tmp_path / "x", "--set", "training.max_minuts=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--set 'training.max_minuts=1': unknown key 'training.max_minuts'" in result.stderr
    assert str(config) not in result.stderr
    model = mlff("train", config, "--out", tmp_path / "x", "--set", "model.num_featurez=1")
    assert "--set 'model.num_featurez=1'" in model.stderr


def test_python_api_has_a_real_signature_and_names_python_arguments(tmp_path):
    import inspect

    import pytest

    import mlff
    from mlff.errors import ConfigError

    parameters = inspect.signature(mlff.train).parameters
    assert list(parameters) == ["config", "out_dir", "resume", "progress", "overrides"]
    assert "20 minutes" in mlff.train.__doc__
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match=r"^overrides 'training.max_minuts=1': unknown key"):
        mlff.train(config, out_dir=tmp_path / "x", overrides=["training.max_minuts=1"])
    out = tmp_path / "run"
    mlff.train(config, out_dir=out, progress=False, overrides=["training.max_epochs=1"])
    with pytest.raises(ConfigError, match=r"Use resume=True to continue it, or choose another out_dir"):
        mlff.train(config, out_dir=out, progress=False)
    again = mlff_cli_resume_error(config, out)
    assert "Use --resume to continue it, or choose another --out" in again


def mlff_cli_resume_error(config, out) -> str:
    result = mlff("train", config, "--out", out, "--quiet")
    assert result.returncode == 2
    return result.stderr
