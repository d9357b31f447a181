"""Every architecture can learn: a tiny model fits a few structures to near-zero error.

The labels come from a teacher (another random model of the same architecture), so a
perfect fit exists; the student starts from other weights and must reach it by training.
"""

from __future__ import annotations

import pytest
import torch

from mlff.data import collate
from mlff.data import keys as K
from tests import helpers

STEPS = 300


def teacher_student_batch(architecture: str):
    """A batch of three rattled ethanols labelled by a teacher, and a fresh student."""
    teacher = helpers.build_potential(architecture, seed=1, scale=10.0)
    student = helpers.build_potential(architecture, seed=2, scale=10.0).train()
    batch = collate([helpers.graph_of(helpers.ethanol(seed=s), teacher.cutoff) for s in range(3)])
    labels = teacher(batch, compute_forces=True)
    return student, batch, labels[K.FORCES].detach(), labels[K.ENERGY].detach()


@pytest.mark.parametrize("architecture", sorted(helpers.TINY_HYPERPARAMETERS))
def test_tiny_model_overfits_a_few_structures(architecture):
    torch.manual_seed(0)
    student, batch, forces, energy = teacher_student_batch(architecture)
    optimizer = torch.optim.Adam(student.parameters(), lr=5e-3)

    def force_error() -> float:
        pred = student(batch, compute_forces=True)
        return float((pred[K.FORCES] - forces).abs().mean())

    start = force_error()
    for _ in range(STEPS):
        pred = student(batch, compute_forces=True, create_graph=True)
        loss = ((pred[K.FORCES] - forces) ** 2).mean() + ((pred[K.ENERGY] - energy) ** 2).mean() / 81
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert start > 1e-2  # the student starts far from the teacher
    assert force_error() < 0.1 * start
