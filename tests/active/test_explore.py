import numpy as np
from ase.build import bulk

from mlff.active.explore import Walker, run_walker
from mlff.uq import Committee, save_committee
from tests import helpers


def _model(tmp_path):
    committee = Committee([helpers.build_potential("painn", seed=s) for s in (0, 1)])
    return str(save_committee(committee, tmp_path / "c.mlff"))


def _start():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.rattle(0.02, seed=3)
    return atoms


def test_walkers_are_reproducible_and_record_disagreement(tmp_path):
    model = _model(tmp_path)
    walker = Walker(index=1, start=_start(), temperature_K=600, pressure_GPa=None, seed=5)
    a = run_walker(model, walker, steps=20, timestep_fs=2.0, sample_every=5, upper=10.0)
    b = run_walker(model, walker, steps=20, timestep_fs=2.0, sample_every=5, upper=10.0)
    assert len(a.frames) == 5 and a.stopped_at is None
    for x, y in zip(a.frames, b.frames, strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)
    assert [f.info["step"] for f in a.frames] == [0, 5, 10, 15, 20]
    assert all(f.info["max_forces_std"] > 0 and f.info["walker"] == 1 for f in a.frames)


def test_npt_walker_moves_the_cell(tmp_path):
    walker = Walker(index=0, start=_start(), temperature_K=300, pressure_GPa=5.0, seed=1)
    result = run_walker(_model(tmp_path), walker, steps=20, timestep_fs=2.0, sample_every=10,
                        upper=10.0)
    volumes = [f.get_volume() for f in result.frames]
    assert abs(volumes[-1] - volumes[0]) > 1e-6


def test_a_walker_stops_when_atoms_come_too_close(tmp_path):
    walker = Walker(index=0, start=_start(), temperature_K=300, pressure_GPa=None, seed=1)
    result = run_walker(_model(tmp_path), walker, steps=20, timestep_fs=2.0, sample_every=5,
                        upper=10.0, min_distance=3.0)  # fcc Cu neighbours sit at 2.55 Å
    assert result.stopped_at == 0 and len(result.frames) == 1
    assert result.frames[0].info["collapsed"] and result.frames[0].info["stopped"]
