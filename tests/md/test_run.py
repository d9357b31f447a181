"""Real ASE MD with a tiny random-init mlff Potential (float64): NVE, NVT, NPT, outputs."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from mlff.calculators import MLFFCalculator
from mlff.errors import SimulationError
from mlff.md import read_start_structure, run_md
from mlff.md.run import THERMO_NAME, TRAJECTORY_NAME
from tests import helpers


@pytest.fixture(scope="module")
def calculator():
    """A tiny PaiNN over H, C, O, Cu with forces of a few eV/Å, float64."""
    return MLFFCalculator(helpers.build_potential("painn", scale=5.0))


def copper_cell():
    """A 2x1x1 cubic fcc Cu supercell (8 atoms), periodic in 3D."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.02, seed=1)
    return atoms


def thermo_columns(path):
    """The thermo.log header and its rows as a float array."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], np.array([[float(x) for x in line.split()] for line in lines[1:]])


def test_nve_conserves_energy(calculator, tmp_path):
    atoms = helpers.ethanol()
    summary = run_md(calculator, atoms, 200, 0.5, 300.0, out_dir=tmp_path, log_interval=1)
    _, rows = thermo_columns(tmp_path / THERMO_NAME)
    total = rows[:, 1]
    assert len(total) == 201
    assert np.ptp(total) / len(atoms) < 1e-3  # eV/atom: total energy within 1 meV/atom
    assert abs(summary["energy_drift_meV_per_atom_per_ps"]) < 1.0
    assert np.ptp(rows[:, 2]) > 10 * np.ptp(total)  # while the potential energy moves
    assert summary["steps"] == 200 and summary["num_atoms"] == 9
    assert summary["simulated_time_ps"] == pytest.approx(0.1)
    assert summary["ms_per_step"] > 0 and summary["wall_time_s"] > 0


def test_initial_velocities_seeded_with_zero_momentum(calculator, tmp_path):
    first, second, other = (helpers.ethanol() for _ in range(3))
    run_md(calculator, first, 5, 0.5, 300.0, out_dir=tmp_path / "a", seed=7)
    run_md(calculator, second, 5, 0.5, 300.0, out_dir=tmp_path / "b", seed=7)
    run_md(calculator, other, 5, 0.5, 300.0, out_dir=tmp_path / "c", seed=8)
    np.testing.assert_array_equal(first.positions, second.positions)
    assert not np.allclose(first.positions, other.positions)
    np.testing.assert_allclose(first.get_momenta().sum(axis=0), 0.0, atol=1e-10)


def test_nvt_langevin_heats_towards_target(tmp_path):
    # a perfect crystal at rest is a minimum: all heat comes from the thermostat
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    summary = run_md(EMT(), atoms, 200, 2.0, 600.0, out_dir=tmp_path, ensemble="nvt",
                     friction_per_fs=0.05, initial_temperature_K=0.0, log_interval=5)
    _, rows = thermo_columns(tmp_path / THERMO_NAME)
    temperature = rows[:, 4]
    assert summary["initial_temperature_K"] == 0.0 and temperature[0] == 0.0
    assert 400.0 < temperature[len(temperature) // 2:].mean() < 800.0
    assert summary["thermostat"] == "langevin"
    assert summary["energy_drift_meV_per_atom_per_ps"] is None


def test_nvt_bussi_cools_towards_target(calculator, tmp_path):
    atoms = helpers.ethanol()
    summary = run_md(calculator, atoms, 200, 0.5, 300.0, out_dir=tmp_path, ensemble="nvt",
                     thermostat="bussi", thermostat_tau_fs=10.0, initial_temperature_K=1500.0,
                     log_interval=5)
    _, rows = thermo_columns(tmp_path / THERMO_NAME)
    temperature = rows[:, 4]
    assert temperature[0] > 1000.0
    assert temperature[len(temperature) // 2:].mean() < 600.0
    assert summary["thermostat"] == "bussi"


def test_bussi_cannot_start_from_rest(calculator, tmp_path):
    with pytest.raises(SimulationError, match="Langevin"):
        run_md(calculator, helpers.ethanol(), 5, 0.5, 300.0, out_dir=tmp_path, ensemble="nvt",
               thermostat="bussi", initial_temperature_K=0.0)


def test_npt_changes_volume_and_logs_stress(calculator, tmp_path):
    atoms = copper_cell()
    summary = run_md(calculator, atoms, 60, 1.0, 300.0, out_dir=tmp_path, ensemble="npt",
                     pressure_bar=1.0, thermostat_tau_fs=20.0, barostat_tau_fs=50.0,
                     log_interval=10)
    assert summary["thermostat"] == "mtk"
    initial, final = summary["initial_volume_A3"], summary["final_volume_A3"]
    assert initial == pytest.approx(2 * 3.6**3)
    assert abs(final - initial) / initial > 1e-3
    assert final == pytest.approx(atoms.get_volume())
    header, rows = thermo_columns(tmp_path / THERMO_NAME)
    assert "stress" in header and "Volume" in header
    assert rows.shape == (7, 1 + 4 + 6 + 1)
    assert rows[-1, -1] == pytest.approx(final, rel=1e-6)
    frames = ase.io.read(tmp_path / TRAJECTORY_NAME, index=":")
    assert frames[-1].get_stress().shape == (6,)
    assert frames[-1].get_volume() == pytest.approx(final)


@pytest.mark.parametrize("pbc", [False, (True, True, False)])
def test_npt_needs_3d_periodic_structure(calculator, tmp_path, pbc):
    atoms = helpers.ethanol() if pbc is False else copper_cell()
    atoms.pbc = pbc
    with pytest.raises(SimulationError, match="periodic in all three directions"):
        run_md(calculator, atoms, 5, 0.5, 300.0, out_dir=tmp_path, ensemble="npt")


def test_outputs_written(calculator, tmp_path):
    atoms = helpers.ethanol()
    summary = run_md(calculator, atoms, 20, 0.5, 300.0, out_dir=tmp_path / "out", log_interval=5)
    frames = ase.io.read(tmp_path / "out" / TRAJECTORY_NAME, index=":")
    assert [f.info["step"] for f in frames] == [0, 5, 10, 15, 20]
    assert frames[2].info["time_fs"] == pytest.approx(5.0)
    last = frames[-1]
    np.testing.assert_allclose(last.positions, atoms.positions, atol=1e-7)
    probe = last.copy()
    probe.calc = calculator
    np.testing.assert_allclose(last.get_potential_energy(), probe.get_potential_energy(), atol=1e-6)
    np.testing.assert_allclose(last.get_forces(), probe.get_forces(), atol=1e-6)
    assert last.get_potential_energy() == pytest.approx(summary["final_potential_energy_eV"])
    header, rows = thermo_columns(tmp_path / "out" / THERMO_NAME)
    assert header.split()[:5] == ["Time[ps]", "Etot[eV]", "Epot[eV]", "Ekin[eV]", "T[K]"]
    np.testing.assert_allclose(rows[:, 0], [0.0, 0.0025, 0.005, 0.0075, 0.01])
    assert summary["trajectory"] == str(tmp_path / "out" / TRAJECTORY_NAME)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"timestep_fs": 0.0}, "timestep"),
        ({"timestep_fs": float("nan")}, "timestep"),
        ({"temperature_K": -1.0}, "temperature"),
        ({"ensemble": "nph"}, "ensemble"),
        ({"thermostat": "berendsen"}, "thermostat"),
        ({"log_interval": 0}, "log_interval"),
        ({"ensemble": "nvt", "friction_per_fs": -0.1}, "friction"),
        ({"ensemble": "npt", "temperature_K": 0.0}, "temperature"),
    ],
)
def test_invalid_settings_raise(calculator, tmp_path, change, match):
    settings = {"steps": 5, "timestep_fs": 0.5, "temperature_K": 300.0, "out_dir": tmp_path}
    settings.update(change)
    with pytest.raises(SimulationError, match=match):
        run_md(calculator, copper_cell(), **settings)
    assert not (tmp_path / TRAJECTORY_NAME).exists()


class _Exploding(Calculator):
    """Harmonic wells that return NaN from the 4th call on."""

    implemented_properties = ["energy", "forces"]

    def __init__(self):
        super().__init__()
        self.calls = 0

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        bad = np.nan if self.calls > 3 else 1.0
        self.results = {"energy": bad * float((self.atoms.positions**2).sum()),
                        "forces": -2.0 * bad * self.atoms.positions}


def test_unstable_run_raises(tmp_path):
    with pytest.raises(SimulationError, match="unstable at step"):
        run_md(_Exploding(), helpers.ethanol(), 20, 0.5, 300.0, out_dir=tmp_path)


def test_read_start_structure(tmp_path):
    path = tmp_path / "frames.xyz"
    ase.io.write(path, [helpers.ethanol(seed=1), helpers.water()], format="extxyz")
    assert read_start_structure(path).get_chemical_formula() == "H2O"
    assert read_start_structure(path, 0).get_chemical_formula() == "C2H6O"
    from mlff.errors import DataError

    with pytest.raises(DataError, match="no frame 5"):
        read_start_structure(path, 5)
    with pytest.raises(DataError, match="no such file"):
        read_start_structure(tmp_path / "missing.xyz")


def test_read_start_structure_from_deepmd_dir(tmp_path):
    from mlff.data.deepmd import write_deepmd_dir
    from mlff.errors import DataError

    frames = [helpers.with_random_labels(helpers.ethanol(seed=s)) for s in range(3)]
    write_deepmd_dir(frames, tmp_path / "system")
    start = read_start_structure(tmp_path / "system", 1)
    np.testing.assert_allclose(start.positions, frames[1].positions, rtol=0, atol=1e-12)
    assert start.calc is None and start.get_chemical_formula() == "C2H6O"
    with pytest.raises(DataError, match="no frame 3"):
        read_start_structure(tmp_path / "system", 3)
