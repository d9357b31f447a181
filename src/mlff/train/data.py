"""Everything the trainer needs from the data: splits, species, E0s and normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from mlff.data.dataset import GraphDataset, default_cache_dir
from mlff.data.readers import LabelKeys
from mlff.data.statistics import (
    check_e0s,
    e0s_from_file,
    e0s_least_squares,
    energy_shift,
    force_rms,
    mean_num_neighbors,
    per_atom_energy_std,
)
from mlff.errors import ConfigError, DataError
from mlff.train.config import TrainConfig


@dataclass
class TrainingData:
    """Datasets and the statistics that normalise the model.

    Attributes:
        train, valid: datasets; test is ``None`` without a test file.
        species: atomic numbers in the training set, sorted.
        e0s: reference energy per atomic number, eV.
        shift: mean per-atom energy after E0s, eV.
        scale: force RMS (or per-atom energy std without forces), eV(/Å).
        avg_num_neighbors: mean neighbours per atom in the training set.
        fingerprints: SHA-256 of each data file.
    """

    train: GraphDataset
    valid: GraphDataset
    test: GraphDataset | None
    species: list[int]
    e0s: dict[int, float]
    shift: float
    scale: float
    avg_num_neighbors: float
    fingerprints: dict[str, str] = field(default_factory=dict)


def _read_indices(path: str, size: int, name: str) -> list[int]:
    try:
        indices = np.loadtxt(path, dtype=np.int64, ndmin=1).tolist()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read {name} ({exc}); expected one integer per line.") from None
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise DataError(f"{path}: {name} {bad[0]} is out of range for a file of {size} frames.")
    return indices


def required_labels(config: TrainConfig) -> tuple[str, ...]:
    """Labels every training frame must carry, from the loss weights."""
    loss = config.training.loss
    names = []
    if loss.energy_weight > 0:
        names.append("energy")
    if loss.forces_weight > 0:
        names.append("forces")
    if loss.stress_weight > 0:
        names.append("stress")
    return tuple(names)


def load_training_data(config: TrainConfig) -> TrainingData:
    """Read, split and analyse the data named in ``config``."""
    data = config.data
    keys = LabelKeys(**data.keys.model_dump())
    cache = default_cache_dir() if data.cache_dir == "default" else data.cache_dir
    cutoff = float(config.model["cutoff"])
    require = required_labels(config)

    def load(path: str) -> GraphDataset:
        return GraphDataset.from_file(path, cutoff, keys, require=require, cache_dir=cache)

    full = load(data.train)
    fingerprints = {"train": full.fingerprint}
    if data.train_indices is not None:
        train = full.subset(_read_indices(data.train_indices, len(full), "training index"))
        valid = full.subset(_read_indices(data.valid_indices, len(full), "validation index"))
    elif data.valid is not None:
        train, valid = full, load(data.valid)
        fingerprints["valid"] = valid.fingerprint
    else:
        if len(full) < 2:
            raise DataError(f"{data.train}: need at least 2 structures to split off validation data.")
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(config.seed)).tolist()
        n_valid = max(1, round(data.valid_fraction * len(full)))
        train, valid = full.subset(sorted(order[n_valid:])), full.subset(sorted(order[:n_valid]))
    test = load(data.test) if data.test is not None else None
    if test is not None:
        fingerprints["test"] = test.fingerprint

    species = train.atomic_numbers
    e0s = _resolve_e0s(data.e0s, train, species, keys)
    has_forces = any(bool(g["has_forces"][0]) for g in train.graphs)
    return TrainingData(
        train=train,
        valid=valid,
        test=test,
        species=species,
        e0s=e0s,
        shift=energy_shift(train, e0s),
        scale=force_rms(train) if has_forces else per_atom_energy_std(train, e0s),
        avg_num_neighbors=mean_num_neighbors(train),
        fingerprints=fingerprints,
    )


def _resolve_e0s(spec, train: GraphDataset, species: list[int], keys: LabelKeys) -> dict[int, float]:
    if spec == "least_squares":
        return e0s_least_squares(train, species)
    if isinstance(spec, dict):
        e0s = {}
        for symbol, value in spec.items():
            if symbol not in atomic_numbers:
                raise ConfigError(f"data.e0s: {symbol!r} is not an element symbol.")
            e0s[atomic_numbers[symbol]] = float(value)
        check_e0s(e0s, species, "data.e0s")
        return e0s
    path = Path(spec)
    e0s = e0s_from_file(path, keys)
    check_e0s(e0s, species, str(path))
    return {z: e0s[z] for z in species}


def symbols(species: list[int]) -> list[str]:
    """Atomic numbers to element symbols."""
    return [chemical_symbols[z] for z in species]
