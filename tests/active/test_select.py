import numpy as np
from ase import Atoms

from mlff.active.select import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    classify,
    farthest_point_sampling,
    select_random,
    select_uncertain,
)


def test_classify_uses_half_open_trust_levels():
    assert list(classify(np.array([0.01, 0.05, 0.2, 0.3]), 0.05, 0.3)) == [
        ACCURATE, CANDIDATE, CANDIDATE, FAILED]


def test_farthest_point_sampling_picks_one_per_cluster_first():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    points = np.concatenate([c + 0.1 * rng.normal(size=(20, 2)) for c in centers])
    chosen = farthest_point_sampling(points, 3, first=0)
    assert sorted(i // 20 for i in chosen) == [0, 1, 2]
    assert farthest_point_sampling(np.zeros((5, 2)), 3) == [0]  # duplicates only


def test_select_uncertain_takes_only_candidates_starting_from_the_most_uncertain():
    frames = [Atoms("Cu", info={"max_forces_std": s}) for s in (0.01, 0.1, 0.2, 0.15, 0.5)]
    descriptors = np.arange(5, dtype=float)[:, None]
    chosen = select_uncertain(frames, descriptors, lower=0.05, upper=0.3, max_labels=2)
    assert chosen[0] == 2 and set(chosen) <= {1, 2, 3} and len(chosen) == 2


def test_select_random_is_seeded():
    frames = [Atoms("Cu") for _ in range(10)]
    a = select_random(frames, 4, np.random.default_rng(1))
    assert a == select_random(frames, 4, np.random.default_rng(1)) and len(set(a)) == 4
