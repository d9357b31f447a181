"""Selection: which explored frames to label.

With trust levels ``lower < upper`` (eV/Å) on a frame's ``max_forces_std``:
``accurate`` (σ < lower: the committee agrees, nothing to learn), ``candidate``
(lower ≤ σ < upper: uncertain but physical), ``failed`` (σ ≥ upper: the model broke,
the structure is likely unphysical). Candidates are thinned to at most ``max_labels``
by farthest-point sampling on the model's structure descriptors, starting from the most
uncertain one, so that one iteration does not label the same configuration many times.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


def classify(sigma: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Class of each frame (array of ``"accurate"``/``"candidate"``/``"failed"``)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return np.where(sigma < lower, ACCURATE, np.where(sigma < upper, CANDIDATE, FAILED))


def farthest_point_sampling(descriptors: np.ndarray, count: int, first: int = 0) -> list[int]:
    """Indices of ``count`` rows of ``descriptors`` (M, F), each the farthest (Euclidean,
    after scaling every feature to unit variance) from those already chosen."""
    if count <= 0 or len(descriptors) == 0:
        return []
    x = np.asarray(descriptors, dtype=np.float64)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    chosen = [first]
    distance = np.linalg.norm(x - x[first], axis=1)
    while len(chosen) < min(count, len(x)):
        nxt = int(np.argmax(distance))
        if distance[nxt] <= 0:
            break  # only duplicates left
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(x - x[nxt], axis=1))
    return chosen


def select_uncertain(
    frames: Sequence[Atoms], descriptors: np.ndarray, lower: float, upper: float, max_labels: int
) -> list[int]:
    """Candidates (by ``info["max_forces_std"]``), thinned by farthest-point sampling."""
    sigma = np.array([f.info["max_forces_std"] for f in frames])
    candidates = np.flatnonzero(classify(sigma, lower, upper) == CANDIDATE)
    if len(candidates) == 0:
        return []
    first = int(np.argmax(sigma[candidates]))
    picked = farthest_point_sampling(descriptors[candidates], max_labels, first)
    return [int(candidates[i]) for i in picked]


def select_random(frames: Sequence[Atoms], max_labels: int, rng: np.random.Generator) -> list[int]:
    """``max_labels`` frames drawn uniformly, whatever their uncertainty (the baseline)."""
    count = min(max_labels, len(frames))
    return sorted(int(i) for i in rng.choice(len(frames), size=count, replace=False))
