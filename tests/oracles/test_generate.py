"""Reference MD with an oracle: kept frames carry the oracle's own labels."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlff.errors import SimulationError
from mlff.oracles import load_oracle, run_reference_md
from tests import helpers


def test_reference_md_keeps_every_kth_step_with_its_labels():
    start = helpers.copper(seed=2, amplitude=0.02)
    oracle = load_oracle({"type": "emt"})
    handed = []
    frames = run_reference_md(start, oracle, temperature_K=500, steps=14, timestep_fs=2.0,
                              every=4, seed=3, on_frame=handed.append)
    assert len(frames) == 14 // 4 and handed == frames
    assert [f.info["md_step"] for f in frames] == [4, 8, 12]
    assert [f.info["md_time_fs"] for f in frames] == [8.0, 16.0, 24.0]
    assert start.calc is None
    for frame in frames:
        assert not np.allclose(frame.positions, start.positions)  # the atoms moved
        reference = frame.copy()
        reference.calc = EMT()
        assert frame.get_potential_energy() == pytest.approx(reference.get_potential_energy(),
                                                             rel=1e-12)
        np.testing.assert_allclose(frame.get_forces(), reference.get_forces(), atol=1e-12)
        np.testing.assert_allclose(frame.get_stress(), reference.get_stress(), atol=1e-12)

    again = run_reference_md(start, oracle, temperature_K=500, steps=14, timestep_fs=2.0,
                             every=4, seed=3)
    other = run_reference_md(start, oracle, temperature_K=500, steps=14, timestep_fs=2.0,
                             every=4, seed=4, ensemble="nve")
    np.testing.assert_array_equal(again[-1].positions, frames[-1].positions)  # seeded
    assert not np.allclose(other[-1].positions, frames[-1].positions)


def test_reference_md_settings_are_checked():
    oracle = load_oracle({"type": "emt"})
    with pytest.raises(SimulationError, match="every must be at least 1"):
        run_reference_md(helpers.copper(), oracle, temperature_K=300, steps=10,
                         timestep_fs=1.0, every=0)
    with pytest.raises(SimulationError, match="timestep"):
        run_reference_md(helpers.copper(), oracle, temperature_K=300, steps=10,
                         timestep_fs=0.0, every=1)


def test_reference_md_resumed_from_a_kept_frame_continues_the_same_trajectory():
    start = helpers.copper(seed=2, amplitude=0.02)
    oracle = load_oracle({"type": "emt"})
    whole = run_reference_md(start, oracle, temperature_K=500, steps=12, timestep_fs=2.0,
                             every=3, seed=7)
    # the run "killed" after its second kept frame, then resumed from it
    first = run_reference_md(start, oracle, temperature_K=500, steps=6, timestep_fs=2.0,
                             every=3, seed=7)
    rest = run_reference_md(start, oracle, temperature_K=500, steps=12, timestep_fs=2.0,
                            every=3, seed=7, resume=first[-1])
    assert [f.info["md_step"] for f in first + rest] == [3, 6, 9, 12]
    for a, b in zip(whole, first + rest):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-10)
        np.testing.assert_allclose(b.get_momenta(), a.get_momenta(), atol=1e-10)
    with pytest.raises(SimulationError, match="has no md_step"):
        run_reference_md(start, oracle, temperature_K=500, steps=12, timestep_fs=2.0,
                         every=3, resume=start)
