"""The physics battery (:mod:`tests.models.physics`) for every registered architecture."""

from __future__ import annotations

import pytest

from mlff.models import architectures
from tests import helpers
from tests.models.physics import ModelPhysicsTests


def test_every_architecture_has_a_tiny_config():
    # a new architecture joins the battery by adding one entry to TINY_HYPERPARAMETERS
    assert set(architectures()) == set(helpers.TINY_HYPERPARAMETERS)


class TestPhysics(ModelPhysicsTests):
    @pytest.fixture(params=sorted(helpers.TINY_HYPERPARAMETERS))
    def hyperparameters(self, request):
        return helpers.full_hyperparameters(request.param, cutoff=4.0)
