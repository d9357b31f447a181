"""i-PI path-integral MD with forces from an mlff model over ASE's socket client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.ipi import run_client, write_ipi_input
from mlff.errors import ConfigError
from tests import helpers


def _serve(tmp_path: Path, structure, potential, beads: int, steps: int) -> np.ndarray:
    """Run i-PI with ``beads`` beads for ``steps`` steps; its properties table."""
    address = f"mlfftest{os.getpid()}_{len(structure)}"
    write_ipi_input(structure, tmp_path, address=address, beads=beads, steps=steps, timestep=0.5)
    server = subprocess.Popen([str(Path(sys.executable).parent / "i-pi"), "input.xml"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        socket = Path(f"/tmp/ipi_{address}")
        deadline = time.monotonic() + 60
        while not socket.exists():
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "i-PI did not open its socket"
            time.sleep(0.1)
        calls = run_client(potential, structure, unix=address)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0
    assert calls == beads * (steps + 1)
    return np.loadtxt(tmp_path / "simulation.out")


def test_path_integral_md_of_a_molecule(tmp_path):
    potential = helpers.build_potential("painn", scale=2.0)
    water = helpers.water()
    table = _serve(tmp_path, water, potential, beads=4, steps=3)
    assert table[:, 0].tolist() == [0, 1, 2, 3]
    water.calc = MLFFCalculator(potential)
    # all beads start at the given structure: i-PI's potential is the model's energy
    assert table[0, 5] == pytest.approx(water.get_potential_energy(), rel=1e-6)
    assert np.all(np.isfinite(table))


def test_periodic_system_with_virial(tmp_path):
    potential = helpers.build_potential("mace", scale=2.0)
    copper = helpers.copper(seed=5).repeat((2, 2, 2))
    table = _serve(tmp_path, copper, potential, beads=2, steps=2)
    copper.calc = MLFFCalculator(potential)
    assert table[0, 5] == pytest.approx(copper.get_potential_energy(), rel=1e-6)


def test_mixed_periodicity_is_refused(tmp_path):
    slab = helpers.copper()
    slab.pbc = (True, True, False)
    with pytest.raises(ConfigError, match="all three directions or none"):
        write_ipi_input(slab, tmp_path)
