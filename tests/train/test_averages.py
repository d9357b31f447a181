"""Averages: which weights a run evaluates (SWA, else EMA, else trained), and when the
EMA is updated."""

from mlff.train.averages import Averages
from mlff.train.averaging import WeightAverage
from tests import helpers


def test_evaluated_weights_follow_ema_then_swa():
    potential = helpers.build_potential("painn")
    assert Averages(potential, None).evaluation_model is potential
    assert Averages(potential, None).step_update() is None
    ema = WeightAverage(potential, 0.9)
    averages = Averages(potential, ema)
    assert averages.evaluation_model is ema.module
    update = averages.step_update()
    update(potential)
    assert int(ema.n_averaged) == 1
    averages.epoch_end()  # no SWA yet: nothing to fold in
    state = averages.state_dict()
    assert state["swa"] is None and int(state["ema"]["n_averaged"]) == 1
    averages.start_swa()
    assert averages.step_update() is None  # SWA replaces the EMA from stage two on
    averages.epoch_end()
    assert averages.evaluation_model is averages.swa.module and int(averages.swa.n_averaged) == 1
    again = Averages(potential, WeightAverage(potential, 0.9))
    again.start_swa()
    again.load_state_dict(averages.state_dict())
    assert int(again.ema.n_averaged) == 1 and int(again.swa.n_averaged) == 1
