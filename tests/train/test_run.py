"""build_run: one seeded setup of a run (data, model, optimizer, EMA, loader)."""

import pytest
import torch

from mlff.data import keys as K
from mlff.train.config import ResolvedConfig, validate_config
from mlff.train.run import build_run
from mlff.train.start import align_energy_offset, build_potential

from .conftest import small_config


def test_a_run_is_set_up_from_the_resolved_config_and_the_seed(ethanol_small, tmp_path):
    config = validate_config(small_config(ethanol_small))
    first, second = (build_run(config, tmp_path, progress=False) for _ in range(2))
    assert isinstance(first.config, ResolvedConfig)
    assert first.trained is first.potential and first.structure_table is None  # one process
    assert first.ema is not None and first.ema.module is not first.potential
    assert first.optimizer.param_groups[0]["lr"] == config.training.lr
    assert first.potential.dtype == torch.float64
    for (name, a), b in zip(first.potential.state_dict().items(),
                            second.potential.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # same seed, same starting weights
    first_batch = next(iter(first.loader.batches(0)))
    assert torch.equal(first_batch[K.POSITIONS], next(iter(second.loader.batches(0)))[K.POSITIONS])


def test_the_energy_offset_of_a_fresh_model_is_folded_into_its_shift(ethanol_small, tmp_path):
    from mlff.train.data import load_training_data

    config = validate_config(small_config(ethanol_small))
    data = load_training_data(config)
    potential = build_potential(config, data)
    shift = float(potential.shift)
    correction = align_energy_offset(potential, data.train)
    assert abs(correction) > 1e-3
    assert float(potential.shift) == pytest.approx(shift - correction, abs=1e-6)
    assert abs(align_energy_offset(potential, data.train)) < 1e-5  # nothing left to fold
