"""``mlff label`` (resumable after a kill) and ``mlff generate``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlff import read_structures
from mlff.active.store import LabelStore, structure_key
from mlff.cli.main import main
from tests import helpers

REPOSITORY = Path(__file__).resolve().parents[2]
FRAMES = 8


def _label_command(structures: Path, oracle: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mlff", "label", str(structures), "--oracle", str(oracle),
            "--out", str(out), "--workers", "1"]


def _summary(stdout: str, row: str) -> str:
    """The value in the summary table's row ``row``."""
    match = re.search(rf"{re.escape(row)}\s*│\s*(\S+)", stdout)
    return match.group(1) if match else ""


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_label_resumes_after_being_killed(tmp_path, capsys, monkeypatch):
    frames = [helpers.copper(seed=20 + i) for i in range(FRAMES)]
    structures, out, calls = tmp_path / "frames.xyz", tmp_path / "labels.db", tmp_path / "calls"
    ase.io.write(structures, frames, format="extxyz")
    oracle = tmp_path / "oracle.yaml"
    oracle.write_text("type: ase\ncalculator: tests.oracles.calculators:SlowCalculator\n"
                      f"kwargs:\n  delay: 0.2\n  counter_file: {calls}\n"
                      f"  directory: {tmp_path / 'runs'}\n")
    store = LabelStore(out)  # created before the run, so the poll below never races it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}

    first = subprocess.Popen(_label_command(structures, oracle, out), cwd=REPOSITORY, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.time() + 90
        while store.count("ok") < 3 and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)  # the command, its pool and its workers
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    committed, calls_before = len(store), _lines(calls)
    assert 3 <= committed < FRAMES and store.count("failed") == 0

    # run again (in this process, which saves a start-up of mlff; same code path)
    monkeypatch.chdir(REPOSITORY)
    options = _label_command(structures, oracle, out)[3:]
    assert main(options) == 0
    stdout = capsys.readouterr().out
    remaining = FRAMES - committed
    assert _summary(stdout, "labelled now") == str(remaining), stdout
    assert _summary(stdout, "skipped (already labelled)") == str(committed), stdout
    # the rerun called the oracle only for the frames not yet stored
    assert _lines(calls) - calls_before == remaining
    # and every frame is stored exactly once, labelled
    database = ase.db.connect(str(out), type="db", use_lock_file=False)
    assert len(store) == FRAMES == store.count("ok")
    for frame in frames:
        assert database.count(structure_key=structure_key(frame)) == 1
    for labelled in store.labelled():
        reference = labelled.copy()
        reference.calc = EMT()
        assert labelled.get_potential_energy() == pytest.approx(
            reference.get_potential_energy(), rel=1e-12)
        assert labelled.info["oracle"] == "ase:tests.oracles.calculators:SlowCalculator"
        assert labelled.info["source"].startswith(f"{structures}:")


def test_label_user_errors(tmp_path, capsys):
    structures = tmp_path / "frames.xyz"
    ase.io.write(structures, [helpers.copper()], format="extxyz")
    oracle = tmp_path / "oracle.yaml"
    oracle.write_text("type: emt\nxc: PBE\n")
    cases = [
        (["--oracle", str(tmp_path / "none.yaml")], "no such oracle config file"),
        (["--oracle", str(oracle)], "xc is not a setting of the 'emt' oracle"),
    ]
    oracle_ok = tmp_path / "emt.yaml"
    oracle_ok.write_text("type: emt\n")
    cases += [
        (["--oracle", str(oracle_ok), "--index", "5"], "has no frame 5"),
        (["--oracle", str(oracle_ok), "--index", "a:b"], "not a frame index"),
        (["--oracle", str(oracle_ok), "--workers", "2", "--scheduler", "tcp://x:1"],
         "Give one of them"),
    ]
    for options, message in cases:
        status = main(["label", str(structures), "--out", str(tmp_path / "l.db"), *options])
        captured = capsys.readouterr()
        assert status == 2 and message in captured.err, (options, captured.err)


def test_generate_writes_the_requested_frames(tmp_path, capsys):
    start = tmp_path / "cu.xyz"
    ase.io.write(start, helpers.copper(seed=5, amplitude=0.02), format="extxyz")
    oracle = tmp_path / "emt.yaml"
    oracle.write_text("type: emt\n")
    common = ["generate", str(start), "--oracle", str(oracle), "--temperature", "400",
              "--steps", "15", "--timestep", "2", "--every", "5", "--seed", "1"]

    out = tmp_path / "aimd.xyz"
    assert main([*common, "--out", str(out)]) == 0
    assert "frames written" in capsys.readouterr().out
    structures = read_structures(out, require=("energy", "forces", "stress"))
    assert len(structures) == 3
    for structure in structures:
        reference = structure.atoms.copy()
        reference.calc = EMT()
        # extxyz keeps 8 decimals of the positions: agreement to ~1e-8 eV, not exact
        assert structure.energy == pytest.approx(reference.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(structure.forces, reference.get_forces(), atol=1e-7)

    database = tmp_path / "aimd.db"
    assert main([*common, "--out", str(database), "--iteration", "2"]) == 0
    store = LabelStore(database)
    assert store.count("ok") == 3
    assert [a.info["md_step"] for a in store.labelled(iteration=2)] == [5, 10, 15]
    np.testing.assert_allclose(store.labelled()[-1].positions, structures[-1].atoms.positions,
                               atol=1e-7)  # same seed, same trajectory
    capsys.readouterr()
    assert main([*common, "--out", str(database)]) == 0  # again: resumes at its end
    assert _summary(capsys.readouterr().out, "resumed from step") == "15"
    assert len(store) == 3
    assert main([*common, "--out", str(database), "--restart"]) == 0  # nothing stored twice
    assert "frames already in the store" in capsys.readouterr().out
    assert len(store) == 3

    assert main([*common, "--out", str(tmp_path / "aimd.txt")]) == 2
    assert "FILE.xyz" in capsys.readouterr().err
