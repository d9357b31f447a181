"""Cost check: every timed call really computes, and the speed-up is the ratio shown."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator
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
    assert s["speedup"] == pytest.approx(s["reference_cpu_ms_per_call"] / s["model_cpu_ms_per_call"])
    assert s["wall_speedup"] == pytest.approx(s["reference_ms_per_call"] / s["model_ms_per_call"])
    assert result.headlines[-1].quantity == "speed-up over the reference (CPU time)"
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


BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


class SubprocessEMT(Calculator):
    """EMT whose call also keeps a child process busy for ``seconds`` of CPU, as a DFT code
    run as a subprocess does: a process started and waited for in each call (``fresh``),
    or one that lives across calls and works on request, like CP2K's shell (``live``)."""

    implemented_properties = ("energy", "forces")

    def __init__(self, kind: str, seconds: float):
        super().__init__()
        self.kind, self.seconds, self.emt = kind, seconds, EMT()
        if kind == "live":
            loop = ("import sys, time\nfor line in sys.stdin:\n    end = time.process_time() + "
                    f"{seconds}\n    while time.process_time() < end: pass\n"
                    "    print('done', flush=True)\n")
            self.worker = subprocess.Popen([sys.executable, "-c", loop], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True)

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        if self.kind == "fresh":
            subprocess.run([sys.executable, "-c", BUSY.format(seconds=self.seconds)], check=True)
        else:
            self.worker.stdin.write("go\n")
            self.worker.stdin.flush()
            assert self.worker.stdout.readline().strip() == "done"
        self.emt.calculate(atoms, properties, system_changes)
        self.results = dict(self.emt.results)


@pytest.mark.parametrize("kind", ["fresh", "live"])
def test_cpu_time_counts_the_child_processes_of_a_call(kind):
    """A reference that computes in a child process: its CPU time is the child's."""
    reference = SubprocessEMT(kind, seconds=0.3)
    try:
        wall, cpu = cost.time_calls(reference, bulk("Cu", "fcc", a=3.6), calls=2, warmup=1)
    finally:
        if kind == "live":
            reference.worker.stdin.close()
            reference.worker.wait()
    assert (cpu >= 0.29).all() and (cpu < wall + 0.2).all(), (cpu, wall)
