"""Cost check: every timed call really computes, and the speed-up is the ratio shown."""

from __future__ import annotations

import json

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.errors import ConfigError
from mlff.validate.checks import cost


class CountingEMT(EMT):
    """EMT that counts its calculations (to prove no answer came from a cache)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calculations = 0

    def calculate(self, *args, **kwargs):
        self.calculations += 1
        super().calculate(*args, **kwargs)


def test_speedup_is_the_ratio_of_median_times(tmp_path, cu_model):
    structure = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    reference = CountingEMT()
    options = cost.CostOptions(model_calls=5, reference_calls=3, warmup_calls=1)
    result = cost.run(cu_model, structure, tmp_path, reference, options, reference_name="EMT")
    assert reference.calculations == 4  # one per call: new positions defeat the cache
    s = result.summary
    assert len(s["model_ms_all_calls"]) == 5 and len(s["reference_ms_all_calls"]) == 3
    assert s["speedup"] == pytest.approx(s["reference_ms_per_call"] / s["model_ms_per_call"])
    assert result.headlines[-1].quantity == "speed-up over the reference"
    data = json.loads((tmp_path / "cost-timings.json").read_text())["data"]
    assert data["names"] == ["model", "EMT"] and data["speedup"] == pytest.approx(s["speedup"])


def test_minimum_speedup_verdict_and_model_alone(tmp_path, cu_model):
    structure = bulk("Cu", "fcc", a=3.6, cubic=True)
    options = cost.CostOptions(model_calls=2, reference_calls=1, min_speedup=1e9)
    result = cost.run(cu_model, structure, tmp_path, EMT(), options)
    assert result.headlines[-1].passed is False
    alone = cost.run(cu_model, structure, tmp_path, None, options)
    assert "speedup" not in alone.summary and alone.headlines[0].unit == "ms"
    with pytest.raises(ConfigError, match="model_calls"):
        cost.run(cu_model, structure, tmp_path, options=cost.CostOptions(model_calls=0))
