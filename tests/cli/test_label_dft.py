"""``mlff label`` and ``mlff generate`` with real DFT (CP2K, GPAW) on periodic silicon:
resumed after ``kill -9`` without relabelling, stored forces equal to finite differences of
the oracle's own energy."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml

from mlff.active.store import LabelStore
from mlff.cli.main import main
from mlff.oracles import load_oracle
from tests.oracles import dft

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLE = REPOSITORY / "examples" / "silicon" / "oracle.yaml"
HAVE = {"cp2k": shutil.which("cp2k_shell.psmp") is not None,
        "gpaw": importlib.util.find_spec("gpaw") is not None}
CHEAP = {"cp2k": "type: cp2k\ncutoff: 2041.0\nrel_cutoff: 544.0\nkpts: [1, 1, 1]\n",
         "gpaw": "type: gpaw\ncutoff: 250.0\nkpts: [2, 2, 2]\n"}
FRAMES = 4


def _code(name: str):
    return pytest.param(name, marks=pytest.mark.skipif(not HAVE[name],
                                                       reason=f"{name} is not installed"))


def _silicon_frames(count: int) -> list:
    frames = []
    for i in range(count):
        atoms = dft.silicon2()
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
    return frames


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _assert_forces_are_gradients(labelled, settings) -> None:
    """The stored forces of ``labelled`` equal central differences of the oracle's energy
    along a generic displacement of every atom (so every component is checked), computed
    with one calculator (the second SCF starts from the first's wave functions)."""
    bare = labelled.copy()
    bare.calc = None
    calc = load_oracle(settings).make_calculator()

    def energy(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return atoms.get_potential_energy()

    direction = dft.generic_direction(bare)
    try:
        numeric = dft.fd_force_along(energy, bare, direction)
    finally:
        if hasattr(calc, "close"):  # CP2K's shell
            calc.close()
    assert (labelled.get_forces() * direction).sum() == pytest.approx(numeric, abs=1e-3)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> None:
    try:
        deadline = time.time() + timeout
        while not ready() and process.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, "the first run ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)  # the command, its pool, its workers, CP2K
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.mark.parametrize("code", [_code("cp2k"), _code("gpaw")])
def test_label_resumes_after_kill_without_relabelling(code, tmp_path, capsys, monkeypatch):
    structures, out, oracle = tmp_path / "si.xyz", tmp_path / "labels.db", tmp_path / "o.yaml"
    ase.io.write(structures, _silicon_frames(FRAMES), format="extxyz")
    oracle.write_text(CHEAP[code])
    store = LabelStore(out)
    command = ["label", str(structures), "--oracle", str(oracle), "--out", str(out),
               "--workers", "1"]
    first = subprocess.Popen([sys.executable, "-m", "mlff", *command], cwd=REPOSITORY,
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    _kill_when(first, lambda: store.count("ok") >= 1)
    before = {a.info["structure_key"]: a for a in store.labelled()}
    assert 1 <= len(before) < FRAMES and store.count("failed") == 0

    monkeypatch.chdir(REPOSITORY)
    assert main(command) == 0
    stdout = capsys.readouterr().out
    assert "skipped (already labelled)" in stdout
    after = {a.info["structure_key"]: a for a in store.labelled()}
    assert len(after) == FRAMES == len(store)
    for key, atoms in before.items():  # stored once, untouched by the rerun
        assert after[key].info["wall_time"] == atoms.info["wall_time"]
        np.testing.assert_array_equal(after[key].get_forces(), atoms.get_forces())
    assert sum(a.info["wall_time"] > 0 for a in after.values()) == FRAMES
    _assert_forces_are_gradients(after[min(after)], yaml.safe_load(CHEAP[code]))


@pytest.mark.skipif(not HAVE["cp2k"], reason="cp2k is not installed")
def test_example_silicon_oracle_labels_forces_equal_to_finite_differences(tmp_path, capsys):
    # the shipped settings (CP2K, 150 Ry, smearing, SCF criteria) with 2x2x2 k-points
    # instead of the mesh kpoint_density gives this 2-atom cell, to keep the test short
    settings = yaml.safe_load(EXAMPLE.read_text())
    del settings["kpoint_density"]
    settings["kpts"] = [2, 2, 2]
    example = tmp_path / "oracle.yaml"
    example.write_text(yaml.safe_dump(settings))
    structures, out = tmp_path / "si.xyz", tmp_path / "labels.db"
    ase.io.write(structures, _silicon_frames(1), format="extxyz")
    assert main(["label", str(structures), "--oracle", str(example), "--out", str(out),
                 "--workers", "1"]) == 0
    (labelled,) = LabelStore(out).labelled()
    assert labelled.info["oracle"] == "cp2k:PBE/DZVP-MOLOPT-SR-GTH"
    _assert_forces_are_gradients(labelled, settings)


@pytest.mark.skipif(not HAVE["gpaw"], reason="gpaw is not installed")
def test_ab_initio_md_resumes_after_kill(tmp_path, capsys, monkeypatch):
    start, out, oracle = tmp_path / "si.xyz", tmp_path / "aimd.xyz", tmp_path / "o.yaml"
    ase.io.write(start, dft.silicon2(), format="extxyz")
    oracle.write_text(CHEAP["gpaw"])
    command = ["generate", str(start), "--oracle", str(oracle), "--out", str(out),
               "--temperature", "600", "--steps", "5", "--timestep", "2", "--every", "1",
               "--seed", "4"]
    first = subprocess.Popen([sys.executable, "-m", "mlff", *command], cwd=REPOSITORY,
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)

    def frames_written() -> int:
        return out.read_text().count("md_step=") if out.exists() else 0

    _kill_when(first, lambda: frames_written() >= 2)
    written = frames_written()
    monkeypatch.chdir(REPOSITORY)
    assert main(command) == 0
    assert "resuming from step" in capsys.readouterr().err
    frames = ase.io.read(out, ":")
    assert [f.info["md_step"] for f in frames] == [1, 2, 3, 4, 5]
    assert written < 5
    # each kept frame carries the oracle's own labels of its positions
    last = frames[-1].copy()
    last.calc = None
    reference = load_oracle(oracle).label(last)
    np.testing.assert_allclose(frames[-1].get_forces(), reference.atoms.get_forces(),
                               atol=1e-4)


@pytest.mark.parametrize("code", [_code("cp2k"), _code("gpaw")])
def test_dask_workers_label_with_their_own_code_processes(code):
    from mlff.oracles import ExecutorConfig, label_many, make_executor

    config = yaml.safe_load(CHEAP[code])
    frames = _silicon_frames(2)
    with make_executor(ExecutorConfig(local_cluster=True, workers=2)) as executor:
        results = label_many(frames, config, executor)
    assert all(result.ok for result in results), [result.reason for result in results]
    for frame, result in zip(frames, results, strict=True):  # in order, each its own structure
        np.testing.assert_array_equal(result.atoms.positions, frame.positions)
    here = load_oracle(config).label(frames[1])  # the labels this process computes
    assert results[1].atoms.get_potential_energy() == pytest.approx(
        here.atoms.get_potential_energy(), abs=1e-5)
    np.testing.assert_allclose(results[1].atoms.get_forces(), here.atoms.get_forces(),
                               atol=1e-4)
