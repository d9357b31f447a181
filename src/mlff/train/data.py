"""Everything the trainer needs from the data: splits, species, E0s and normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlff.data.dataset import GraphDataset, default_cache_dir
from mlff.data.dispersion import dispersion_settings
from mlff.data.dispersion_labels import subtract_dispersion
from mlff.data.packed import PackedDataset, is_packed, open_packed
from mlff.data.readers import LabelKeys
from mlff.data.split import random_split
from mlff.data.statistics import check_units, resolve_e0s, summarize
from mlff.errors import ConfigError, DataError
from mlff.train.config import TrainConfig
from mlff.train.finetune import add_replay, finetune_e0s, pretrained_metadata, resolve_config


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

    train: GraphDataset | PackedDataset
    valid: GraphDataset | PackedDataset
    test: GraphDataset | PackedDataset | None
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
    """Labels every training frame must carry, from the loss weights (of both stages)."""
    losses = (config.training.loss, config.training.stage_two_loss())
    names = []
    if any(loss.energy_weight > 0 for loss in losses):
        names.append("energy")
    if any(loss.forces_weight > 0 for loss in losses):
        names.append("forces")
    if any(loss.stress_weight > 0 for loss in losses):
        names.append("stress")
    return tuple(names)


def check_config_type_weights(weights: dict[str, float], *datasets) -> None:
    """Raise if ``data.config_type_weights`` names a config_type absent from ``datasets``.

    Raises:
        ConfigError: naming the unknown names and listing the config_types of the data.
    """
    present = sorted({name for dataset in datasets for name in dataset.config_types})
    unknown = sorted(set(weights) - set(present))
    if unknown:
        raise ConfigError(
            f"data.config_type_weights: no structure of the training or validation data has "
            f"config_type {', '.join(map(repr, unknown))}. The config_types present are: "
            f"{', '.join(map(repr, present))}."
        )


def check_finetune_dispersion(config: TrainConfig) -> None:
    """Raise unless a fine-tuning run subtracts the same D3 as its pretrained model did.

    Raises:
        ConfigError: the pretrained model and ``data.dispersion`` disagree on D3.
    """
    if config.finetune is None:
        return
    path = config.finetune.init_from
    base = dispersion_settings(pretrained_metadata(config), path)
    mine = config.data.dispersion
    if base is None and mine is None:
        return
    if base is None or mine is None or base.resolved() != mine.resolved():
        def say(settings):
            return "no D3" if settings is None else settings.resolved().describe()

        raise ConfigError(
            f"data.dispersion ({say(mine)}) differs from the D3 that finetune.init_from "
            f"{path} was trained without ({say(base)}): the pretrained model and the new "
            "labels would disagree on what the network learns. Set data.dispersion as the "
            "pretrained model's (see `mlff info`)."
        )


def load_training_data(config: TrainConfig) -> TrainingData:
    """Read, split and analyse the data named in ``config``."""
    config = resolve_config(config)  # a fine-tuning run takes the cutoff of its model
    check_finetune_dispersion(config)
    data = config.data
    keys = LabelKeys(**data.keys.model_dump())
    cache = default_cache_dir() if data.cache_dir == "default" else data.cache_dir
    cutoff = float(config.model.cutoff)
    require = required_labels(config)

    def load(path: str) -> GraphDataset | PackedDataset:
        if is_packed(path):
            dataset = open_packed(path, cutoff, require, stream=data.stream)
        else:
            dataset = GraphDataset.from_file(path, cutoff, keys, require=require, cache_dir=cache)
        if data.dispersion is None:
            return dataset
        if not isinstance(dataset, GraphDataset):
            raise ConfigError(
                f"data.dispersion cannot be used with data.stream: true ({path} is streamed "
                "from disk); set data.stream: false to train on it minus D3 in memory."
            )
        return subtract_dispersion(dataset, data.dispersion, cache)

    if data.stream and not is_packed(data.train):
        raise ConfigError(
            f"data.stream: true needs a packed training set (.h5), but data.train is "
            f"{data.train}. Pack it with `mlff data pack {data.train} --out DATA.h5 --cutoff "
            f"{cutoff}`, or set data.stream: false."
        )
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
        train_indices, valid_indices, _ = random_split(len(full), data.valid_fraction,
                                                       seed=config.seed)
        train, valid = full.subset(train_indices), full.subset(valid_indices)
    test = load(data.test) if data.test is not None else None
    if test is not None:
        fingerprints["test"] = test.fingerprint
    elif data.test_indices is not None:
        test = full.subset(_read_indices(data.test_indices, len(full), "test index"))
    if data.stream and config.finetune is not None and config.finetune.replay_fraction > 0:
        raise ConfigError(
            "data.stream: true cannot mix in finetune.replay_data (that would load the training "
            "set into memory); pack the replay structures with the training data instead, or "
            "set data.stream: false."
        )
    if data.bootstrap_seed is not None:
        rng = np.random.default_rng(data.bootstrap_seed)
        train = train.subset(rng.integers(0, len(train), size=len(train)).tolist())
    train = add_replay(config, train, load, fingerprints)
    check_config_type_weights(data.config_type_weights, train, valid)

    summary = summarize(train)  # one streaming pass: a packed set is never all in memory
    check_units(summary, str(data.train))
    species = sorted(summary.species)
    if config.finetune is not None:
        e0s = finetune_e0s(config, train, species, keys)
    else:
        e0s = resolve_e0s(data.e0s, summary, species, keys)
    return TrainingData(
        train=train,
        valid=valid,
        test=test,
        species=species,
        e0s=e0s,
        shift=summary.energy_shift(e0s),
        scale=summary.force_rms() if summary.has_forces else summary.per_atom_energy_std(e0s),
        avg_num_neighbors=summary.mean_num_neighbors(),
        fingerprints=fingerprints,
    )
