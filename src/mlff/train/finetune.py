"""Fine-tuning: continue training a saved model (``*.mlff``) on new data.

The ``finetune`` section of the training config names the pretrained model. Then:

- the ``model`` section may be left out (it is taken from the model file); keys it does
  give must equal the pretrained model's (:func:`resolve_config`);
- the new potential knows the union of the pretrained model's elements and those of the
  new training data, **sorted by atomic number** (as every model built by mlff), so a
  fine-tuned model is indistinguishable in form from one trained from scratch; without
  new elements the pretrained list is kept as it is, and an imported model cannot gain
  elements (:mod:`mlff.train.pretrained`);
- every weight is copied; the architecture grows its per-element entries (embedding
  rows, one-hot linear maps, species-dependent skips, per-species scales:
  :meth:`mlff.models.contract.Architecture.grow_species`), so predictions for the old
  elements are unchanged, and the entries of new elements keep the architecture's own
  fresh initialisation, seeded by ``seed`` (:func:`potential_from_pretrained`);
- E0s: the pretrained ones are kept (``keep_e0s``; with ``auto`` unless the pretrained
  model is over 1 eV/atom off the new energies, then they are refitted:
  :func:`mlff.train.pretrained.e0s_to_refit`); new elements get theirs from
  ``data.e0s`` - an isolated-atoms file, a mapping, or ``least_squares``: a fit of the
  new training energies minus the extended model's prediction, the kept E0s held fixed
  (:func:`finetune_e0s`, :func:`fit_e0s_to_model`); scale and shift are the pretrained
  model's, and the trainer does not re-align the energy offset;
- parameters named by a ``freeze`` prefix stop training; a parameter that gained entries
  for new elements keeps those trainable while its pretrained entries stay fixed;
- with ``adapters``, the model gains per-element adapters for those elements and only
  element-local parameters train (:mod:`mlff.train.adapters`);
- the learning rate is ``training.lr * lr_factor`` (:func:`learning_rate`);
- with ``replay_fraction`` > 0, structures of the original data (``replay_data``) are
  drawn with the seed and added to the training set, so they make up that fraction of
  every epoch (:func:`add_replay`). The validation set holds new data only. Replay
  labelled by the model itself is :mod:`mlff.train.replay`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase.data import atomic_numbers as symbol_numbers
from ase.data import chemical_symbols
from torch import nn

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset, file_fingerprint
from mlff.data.readers import LabelKeys
from mlff.data.statistics import resolve_e0s
from mlff.errors import ConfigError, DataError, ModelFileError
from mlff.models.contract import Architecture
from mlff.models.io import read_metadata
from mlff.models.potential import Potential
from mlff.models.predict import batched_outputs
from mlff.models.registry import build_model
from mlff.train.adapters import train_element_local, with_adapters
from mlff.train.config import ResolvedConfig, TrainConfig, validate_model_section
from mlff.train.pretrained import e0s_to_refit, finetune_species
from mlff.uq.io import load_model

if TYPE_CHECKING:
    from mlff.train.data import TrainingData

# provenance of each pretrained file, taken when it is loaded: the model file written at
# the end of a run records the file that was used, even if it changed or went since
_PROVENANCE: dict[str, dict[str, Any]] = {}
# per fine-tuned potential: name -> bool mask of the entries grown for new elements
_GROWN: weakref.WeakKeyDictionary[Potential, dict[str, torch.Tensor]] = weakref.WeakKeyDictionary()


def pretrained_metadata(config: TrainConfig) -> dict[str, Any]:
    """The metadata of ``finetune.init_from`` (of a resolved config: as read when resolved).

    Raises:
        ModelFileError: the file is missing or not a model file; the message names the key.
    """
    assert config.finetune is not None
    path = config.finetune.init_from
    if is_resolved(config):
        assert isinstance(config, ResolvedConfig) and config._pretrained is not None
        return config._pretrained[1]  # read once, by resolve_config
    try:
        return read_metadata(path)
    except ModelFileError as exc:
        raise ModelFileError(
            f"finetune.init_from: {exc} Name a model file written by `mlff train` (relative "
            "paths are resolved against the config file's folder)."
        ) from None


def resolve_config(config: TrainConfig) -> ResolvedConfig:
    """The frozen config of one run: ``config`` with its model section complete.

    A fine-tuning config takes its model section from the pretrained model: keys the
    config's ``model`` section gives explicitly must equal the pretrained model's
    hyperparameters (``null`` values, meaning "automatic", are not compared). The result
    keeps the pretrained metadata, so the pretrained file is read once per run: resolving
    it again returns it unchanged, and :func:`pretrained_metadata` of it reads nothing.

    Raises:
        ConfigError: a model key differs from the pretrained model's, naming each key.
        ModelFileError: ``finetune.init_from`` is missing or not a model file.
    """
    if is_resolved(config):
        assert isinstance(config, ResolvedConfig)
        return config
    return _resolve(config)


def _resolve(config: TrainConfig) -> ResolvedConfig:
    if config.finetune is None:
        assert config.model is not None  # TrainConfig's own check
        return ResolvedConfig.of(config, config.model)
    metadata = pretrained_metadata(config)
    path = config.finetune.init_from
    try:
        pretrained = validate_model_section(metadata["hyperparameters"])
    except Exception as exc:  # unknown architecture, bad hyperparameters
        raise ModelFileError(
            f"finetune.init_from: {path}: unusable hyperparameters ({exc})."
        ) from None
    if config.model is not None:
        given, stored = config.model.model_dump(), pretrained.model_dump()
        mismatched = []
        for key in sorted(config.given_model_keys()):
            value = given.get(key)
            if value is None:
                continue
            if key not in stored or stored[key] != value:
                mismatched.append(
                    f"model.{key} is {value!r} but {stored.get(key, '(absent)')!r} in the "
                    "pretrained model"
                )
        if mismatched:
            raise ConfigError(
                f"finetune.init_from {path}: the model section does not match the pretrained "
                f"model: {'; '.join(mismatched)}. Fine-tuning keeps the architecture: remove "
                "these keys (or the whole model section) or set them to the pretrained values."
            )
    return ResolvedConfig.of(config, pretrained, (path, metadata))


def is_resolved(config: TrainConfig) -> bool:
    """Whether ``config`` is :func:`resolve_config`'s result (for its current ``init_from``)."""
    if not isinstance(config, ResolvedConfig):
        return False
    if config.finetune is None:
        return True
    return config._pretrained is not None and config._pretrained[0] == config.finetune.init_from


def learning_rate(config: TrainConfig) -> float:
    """The base learning rate: ``training.lr``, times ``finetune.lr_factor`` when fine-tuning."""
    factor = config.finetune.lr_factor if config.finetune is not None else 1.0
    return config.training.lr * factor


def add_replay(
    config: TrainConfig,
    train: GraphDataset,
    load: Callable[[str], GraphDataset],
    fingerprints: dict[str, str],
) -> GraphDataset:
    """``train`` plus structures of ``finetune.replay_data`` drawn with the seed.

    ``round(f / (1 - f) * len(train))`` replay structures are added for a
    ``replay_fraction`` f, so they are the fraction f of the result (and of each epoch).
    They are drawn without replacement while the replay set lasts, then from a fresh
    permutation of it. Records the replay file's fingerprint under ``"replay"``.
    """
    finetune = config.finetune
    if finetune is None or finetune.replay_fraction <= 0 or finetune.replay_data is None:
        return train
    fraction = finetune.replay_fraction
    count = round(fraction / (1 - fraction) * len(train))
    if count == 0:
        return train
    replay = load(finetune.replay_data)
    fingerprints["replay"] = replay.fingerprint
    if len(replay) == 0:
        raise DataError(f"{finetune.replay_data}: finetune.replay_data holds no structures.")
    generator = torch.Generator().manual_seed(config.seed)
    chosen: list[int] = []
    while len(chosen) < count:
        chosen += torch.randperm(len(replay), generator=generator).tolist()
    replay = replay.subset(chosen[:count])
    return _concatenate(train, replay)


def _concatenate(first: GraphDataset, second: GraphDataset) -> GraphDataset:
    """Both datasets in one, with the config_type tags renumbered over both name lists."""
    names = sorted(set(first.config_types) | set(second.config_types))
    graphs = []
    for dataset in (first, second):
        tags = torch.tensor([names.index(name) for name in dataset.config_types], dtype=torch.int64)
        for graph in dataset:
            graph = dict(graph)  # the datasets' own graphs stay untouched
            graph[K.CONFIG_TYPE] = tags[graph[K.CONFIG_TYPE]]
            graphs.append(graph)
    return GraphDataset(graphs, names, [*first.sources, *second.sources], first.fingerprint)


def finetune_e0s(
    config: TrainConfig, train: GraphDataset, species: list[int], keys: LabelKeys
) -> dict[int, float]:
    """E0s (eV, by atomic number) for the pretrained model's elements and the data's.

    The pretrained E0s are kept for its elements (with ``keep_e0s``; without it, for
    those absent from the new data). The others come from ``data.e0s``: a mapping or an
    isolated-atoms file, or ``least_squares``: here a first estimate, a fit of the new
    training energies minus the kept E0s and the pretrained per-atom ``shift``, which
    :func:`potential_from_pretrained` refines against the network's own prediction
    (:func:`fit_e0s_to_model`).
    """
    assert config.finetune is not None
    metadata = pretrained_metadata(config)
    old = {symbol_numbers[symbol]: float(value) for symbol, value in metadata["e0s"].items()}
    if config.finetune.keep_e0s is not False:
        fixed = dict(old)
    else:
        fixed = {z: e for z, e in old.items() if z not in species}
    needed = [z for z in species if z not in fixed]
    e0s = dict(old)
    if not needed:
        return e0s
    spec = config.data.e0s
    if spec == "least_squares":
        e0s.update(_least_squares_with_fixed(train, needed, fixed, float(metadata["shift"])))
    else:
        resolved = resolve_e0s(spec, train, needed, keys)
        e0s.update({z: resolved[z] for z in needed})
    return e0s


def _least_squares_with_fixed(
    dataset: GraphDataset, needed: list[int], fixed: dict[int, float], shift: float
) -> dict[int, float]:
    column = {z: i for i, z in enumerate(needed)}
    rows, targets = [], []
    for graph in dataset:
        if not bool(graph[K.HAS_ENERGY][0]):
            continue
        numbers = graph[K.ATOMIC_NUMBERS].tolist()
        row = np.zeros(len(needed))
        target = float(graph[K.ENERGY][0]) - shift * len(numbers)
        for z in numbers:
            if z in column:
                row[column[z]] += 1
            else:
                target -= fixed[z]
        if row.any():
            rows.append(row)
            targets.append(target)
    if not rows:
        names = ", ".join(chemical_symbols[z] for z in needed)
        raise DataError(
            f"cannot fit E0s of {names}: no training structure with these elements has an energy. "
            "Give them in data.e0s (a mapping or an isolated-atoms file)."
        )
    e0, *_ = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)
    return {z: float(e) for z, e in zip(needed, e0)}


def refitted_species(config: TrainConfig, old_species: list[int], species: list[int]) -> list[int]:
    """Elements of the training data whose E0s are not kept from the pretrained model."""
    assert config.finetune is not None
    if config.finetune.keep_e0s is not False:
        return [z for z in species if z not in old_species]
    return list(species)


def fit_e0s_to_model(
    potential: Potential,
    dataset: GraphDataset,
    elements: list[int],
    batch_size: int = 64,
    max_structures: int = 2048,
) -> dict[int, float]:
    """Adjust the E0s of ``elements`` by least squares on the energies ``potential`` misses.

    The residuals ``E - E_pred`` of the structures that contain one of ``elements`` are
    fitted by per-element counts; the other E0s, the shift and the network stay as they
    are. The network's output for a pretrained element is then not counted twice, and a
    new element's fresh embedding starts with its mean energy right. At most
    ``max_structures`` of them, evenly spread, are evaluated. Returns the E0s (eV) of
    ``elements`` now in ``potential``.
    """
    if not elements:
        return {}
    column = {z: i for i, z in enumerate(elements)}
    chosen = [
        i
        for i, graph in enumerate(dataset)
        if bool(graph[K.HAS_ENERGY][0])
        and any(z in column for z in graph[K.ATOMIC_NUMBERS].tolist())
    ]
    if not chosen:
        names = ", ".join(chemical_symbols[z] for z in elements)
        raise DataError(
            f"cannot fit E0s of {names}: no training structure with these elements has an energy. "
            "Give them in data.e0s (a mapping or an isolated-atoms file)."
        )
    if len(chosen) > max_structures:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, max_structures).astype(int)]

    rows, residuals = [], []
    with torch.no_grad():
        for batch, out in batched_outputs(potential, dataset.subset(chosen), batch_size,
                                          compute_forces=False):
            predicted = out[K.ENERGY]
            residuals += (batch[K.ENERGY].to(torch.float64) - predicted).tolist()
            counts = torch.zeros(len(predicted), len(elements), dtype=torch.float64)
            for z, i in column.items():
                mine = (batch[K.ATOMIC_NUMBERS] == z).to(torch.float64).cpu()
                counts[:, i] = torch.zeros(len(predicted), dtype=torch.float64).index_add_(
                    0, batch[K.BATCH].cpu(), mine
                )
            rows.append(counts.numpy())
    delta, *_ = np.linalg.lstsq(np.concatenate(rows), np.array(residuals), rcond=None)
    index = [potential.species.index(z) for z in elements]
    potential.e0s[index] += torch.tensor(delta, dtype=torch.float64, device=potential.e0s.device)
    return {z: float(potential.e0s[i]) for z, i in zip(elements, index)}


def potential_from_pretrained(config: TrainConfig, data: TrainingData) -> Potential:
    """The pretrained model of ``config.finetune``, extended to the elements of ``data``.

    See the module docstring for what is copied, initialised and frozen.

    Raises:
        ConfigError: a model key differs from the pretrained model's, or a ``freeze``
            prefix matches no parameter.
        ModelFileError: the pretrained model file is missing or unusable.
    """
    config = resolve_config(config)
    assert config.finetune is not None
    try:
        old = load_model(config.finetune.init_from, single=True)
    except ModelFileError as exc:
        raise ModelFileError(f"finetune.init_from: {exc}") from None
    _PROVENANCE[config.finetune.init_from] = _provenance(config)
    old_species = list(old.species)
    metadata = pretrained_metadata(config)
    species = finetune_species(config, metadata, old_species, data.species)
    keep = config.finetune.keep_e0s
    old_e0s = dict(zip(old_species, old.e0s.tolist()))
    e0s = []
    for z in species:
        if z in old_e0s and (keep or z not in data.e0s):
            e0s.append(old_e0s[z])
        elif z in data.e0s:
            e0s.append(data.e0s[z])
        else:
            raise DataError(f"no E0 for {chemical_symbols[z]}: give it in data.e0s.")

    positions = [species.index(z) for z in old_species]
    if old.hyperparameters.get("adapters") and species != old_species:
        raise ConfigError(
            "finetune.init_from has per-element adapters (finetune.adapters), which are tied "
            "to its element list, and the new data add elements "
            f"({', '.join(chemical_symbols[z] for z in species if z not in old_species)}): "
            "fine-tune the model it was made from instead.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the fresh entries of new elements
        model, fresh = _grown(old.model, positions, len(species), config)
    hyperparameters = config.model.model_dump()
    if config.finetune.adapters:
        model, hyperparameters = with_adapters(model, hyperparameters, species,
                                               config.finetune.adapters)
    potential = Potential(
        model, hyperparameters, species, e0s, scale=float(old.scale), shift=float(old.shift)
    ).to(dtype=old.dtype)
    with torch.no_grad():  # exactly, not through the default dtype of the constructor
        potential.scale.copy_(old.scale)
        potential.shift.copy_(old.shift)
    refit = e0s_to_refit(config, potential, data.train, old_species, data.species)
    fit_e0s_to_model(potential, data.train, refit)

    grown = {f"model.{name}": mask for name, mask in fresh.items() if mask.any()}
    _GROWN[potential] = grown
    # prefixes of the heads multihead adds are applied once they exist (mlff.train.start)
    later = config.finetune.multihead
    freeze(potential, [p for p in config.finetune.freeze if not (later and is_head_prefix(p))],
           grown, config)
    if config.finetune.adapters:
        train_element_local(potential)
    return potential


# the parameters of the readout heads finetune.multihead adds (mlff.models.heads)
HEAD_PREFIX = "model.extra_heads"


def is_head_prefix(prefix: str) -> bool:
    """Whether a ``finetune.freeze`` prefix names parameters of an added readout head."""
    prefix = prefix.strip().rstrip(".")
    return prefix == HEAD_PREFIX or prefix.startswith(HEAD_PREFIX + ".")


def grown_entries(potential: Potential) -> dict[str, torch.Tensor]:
    """Parameter name -> bool mask of the entries :func:`potential_from_pretrained` added
    for new elements (empty for a potential it did not make or that gained none)."""
    return dict(_GROWN.get(potential, {}))


def _grown(model: nn.Module, positions: list[int], num_species: int,
           config: TrainConfig) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """``model`` with ``num_species`` species (:meth:`Architecture.grow_species`); a
    registered model outside the architecture contract can only keep its species."""
    if isinstance(model, Architecture):
        return model.grow_species(positions, num_species)
    assert config.finetune is not None and config.model is not None
    grown = build_model(config.model.model_dump(), num_species).to(
        dtype=next(iter(model.state_dict().values())).dtype)
    if positions != list(range(num_species)):
        raise ModelFileError(
            f"finetune.init_from {config.finetune.init_from}: the "
            f"{config.model.architecture} model does not implement the architecture "
            "contract (mlff.models.contract.Architecture), so it cannot take new elements; "
            "fine-tune it on data of its own elements.")
    grown.load_state_dict(model.state_dict(), strict=True)
    return grown, {}


def freeze(
    potential: Potential,
    prefixes: list[str],
    grown: Mapping[str, torch.Tensor] | None = None,
    config: TrainConfig | None = None,
) -> list[str]:
    """Stop training the parameters whose names start with one of ``prefixes``.

    A prefix matches a parameter name equal to it or continuing after a dot
    (``model.messages.1`` matches ``model.messages.1.x``, not ``model.messages.10.x``).
    Parameters in ``grown`` (name -> bool mask of the entries of new elements, from
    :meth:`mlff.models.contract.Architecture.grow_species`) stay trainable, but the
    gradient of every other entry is zeroed, so the pretrained entries stay exactly as
    they were (with Adam/AdamW and no weight decay).

    Returns the names of the frozen parameters.

    Raises:
        ConfigError: a prefix matches no parameter (the message lists the modules), or a
            grown embedding is frozen while weight decay would still move its rows.
    """
    names = [name for name, _ in potential.named_parameters()]
    parameters = dict(potential.named_parameters())
    frozen = []
    for prefix in prefixes:
        prefix = prefix.strip().rstrip(".")
        matches = [name for name in names if name == prefix or name.startswith(prefix + ".")]
        if not matches:
            modules = [
                f"model.{name}"
                for name, module in potential.model.named_children()
                if any(True for _ in module.parameters())
            ]
            blocks = [
                name for name, m in potential.model.named_children() if isinstance(m, nn.ModuleList)
            ]
            hint = f" (a numbered block is named like model.{blocks[0]}.0)" if blocks else ""
            raise ConfigError(
                f"finetune.freeze: {prefix!r} matches no parameter of the "
                f"{potential.hyperparameters['architecture']} model. Its modules are "
                f"{', '.join(modules)}{hint}."
            )
        for name in matches:
            if name in frozen:
                continue
            frozen.append(name)
            parameter = parameters[name]
            if grown and name in grown:
                if config is not None and config.training.weight_decay > 0:
                    raise ConfigError(
                        f"finetune.freeze: {name} gained rows for new elements, which train "
                        "while its pretrained rows are held by zeroing their gradient; weight "
                        "decay would still move them. Set training.weight_decay to 0 or do "
                        "not freeze this embedding."
                    )
                mask = grown[name].to(parameter.dtype)
                parameter.register_hook(lambda grad, mask=mask: grad * mask.to(grad))
            else:
                parameter.requires_grad_(False)
    return frozen


def _provenance(config: TrainConfig) -> dict[str, Any]:
    assert config.finetune is not None
    path = Path(config.finetune.init_from)
    return {
        "init_from": str(path),
        "init_from_sha256": file_fingerprint(path),
        "init_from_data_fingerprint": pretrained_metadata(config).get("data_fingerprint", {}),
    }


def finetune_record(config: TrainConfig) -> dict[str, Any] | None:
    """What the model file records about a fine-tuning run (``None`` without one).

    The pretrained file's path, SHA-256 and training-data fingerprint (as it was when
    :func:`potential_from_pretrained` loaded it), and the fine-tuning settings.
    """
    finetune = config.finetune
    if finetune is None:
        return None
    provenance = _PROVENANCE.get(finetune.init_from) or _provenance(config)
    return {
        **provenance,
        "freeze": list(finetune.freeze),
        "lr_factor": finetune.lr_factor,
        "replay_fraction": finetune.replay_fraction,
        "keep_e0s": finetune.keep_e0s,
        "replay": finetune.replay.model_dump() if finetune.replay is not None else None,
        "anchor": finetune.anchor,
        "multihead": finetune.multihead,
        "adapters": list(finetune.adapters),
    }
