"""The fallback without a compiler: LAMMPS through fix external and a Python callback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.lammps.deploy import deploy
from mlff.calculators.lammps.external import run_input
from mlff.errors import ConfigError
from tests.calculators.lammps.conftest import tiny_potential
from tests.calculators.lammps.test_pair_style import assert_close, bulk_copper, molecule


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A tiny MACE deployed without building the plugin, with a rattled Cu cell."""
    potential = tiny_potential("mace")
    out = tmp_path_factory.mktemp("external")
    return deploy(potential, out, structure=bulk_copper(), build=False,
                  format="torchscript"), potential


def _run_zero(directory, pbc=True):
    text = (directory / "in.lammps").read_text()
    text = text.split("velocity")[0]  # the model and structure part of the example
    text += "thermo_style custom step pe press pxx pyy pzz pxy pxz pyz\nrun 0\n"
    (directory / "in.zero").write_text(text)
    return run_input(directory / "in.zero")


def test_fix_external_equals_ase_calculator(deployment):
    result, potential = deployment
    assert result.plugin is None
    lmp = _run_zero(result.directory)
    nlocal = lmp.extract_global("nlocal")
    order = np.argsort(np.asarray(lmp.numpy.extract_atom("id"))[:nlocal])
    forces = np.asarray(lmp.numpy.extract_atom("f"))[:nlocal][order]
    x = np.asarray(lmp.numpy.extract_atom("x"))[:nlocal][order]
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    atoms = bulk_copper()
    atoms.set_cell([[boxhi[0] - boxlo[0], 0, 0], [xy, boxhi[1] - boxlo[1], 0], [xz, yz, boxhi[2] - boxlo[2]]])
    atoms.positions = x
    atoms.calc = MLFFCalculator(potential)
    assert_close(lmp.get_thermo("pe"), atoms.get_potential_energy(), 1e-10, "energy")
    assert_close(forces, atoms.get_forces(), 1e-10, "forces")
    stress = atoms.get_stress()  # xx yy zz yz xz xy
    nktv2p = lmp.extract_global("nktv2p")
    pressure = [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")]
    assert_close(-np.array(pressure) / nktv2p, stress, 1e-8, "stress")


def test_example_input_runs_md_through_fix_external(deployment):
    result, _ = deployment
    text = (result.directory / "in.lammps").read_text().replace("run             1000", "run 10")
    (result.directory / "in.short").write_text(text)
    lmp = run_input(result.directory / "in.short")
    assert lmp.extract_global("ntimestep") == 10
    assert (result.directory / "traj.lammpstrj").exists()


def test_fallback_command_line(deployment, tmp_path):
    result, _ = deployment
    text = (result.directory / "in.lammps").read_text().replace("run             1000", "run 2")
    (result.directory / "in.cli").write_text(text)
    done = subprocess.run([sys.executable, "-m", "mlff.calculators.lammps.external", "in.cli"],
                          cwd=result.directory, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loop time" in (result.directory / "log.lammps").read_text()


def test_fallback_errors_name_the_problem(deployment, tmp_path):
    result, _ = deployment
    text = (result.directory / "in.lammps").read_text().replace("run             1000", "run 1")
    bad = result.directory / "in.bad"
    bad.write_text(text.replace("model.pt H C O Cu", "model.pt H C O Fe"))
    with pytest.raises(ConfigError, match="element Fe \\(atom type 4\\) is not in the model"):
        run_input(bad)
    no_pair = tmp_path / "in.nopair"
    no_pair.write_text("units metal\n")
    with pytest.raises(ConfigError, match="no 'pair_style mlff' line"):
        run_input(no_pair)


def test_non_periodic_structure(tmp_path):
    potential = tiny_potential("painn")
    result = deploy(potential, tmp_path, structure=molecule(), build=False, format="torchscript")
    lmp = _run_zero(result.directory)
    assert "s s s" in (result.directory / "in.lammps").read_text()
    atoms = molecule()
    atoms.calc = MLFFCalculator(potential)
    assert_close(lmp.get_thermo("pe"), atoms.get_potential_energy(), 1e-10, "energy")
