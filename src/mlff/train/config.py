"""The training configuration: YAML validated by pydantic.

An unknown or mistyped key is an error naming the key and the allowed ones. The model
section is a discriminated union of the registered architectures' own schemas, chosen by
``model.architecture`` (:func:`model_union`), validated once when the config is loaded into
the architecture's typed ``Config``. :class:`ResolvedConfig` is the frozen config one run
works with (made by :func:`mlff.train.finetune.resolve_config`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializeAsAny,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from mlff.data.dispersion import D3Settings
from mlff.errors import ConfigError
from mlff.interface import argument
from mlff.models.precision import Precision
from mlff.models.registry import ModelConfig, architectures, get_architecture


class _Strict(BaseModel):
    # a NaN or infinite setting (lr: .inf) is a typo, never a choice
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def model_union() -> TypeAdapter:
    """The model section's type: the union of the registered architectures' ``Config``
    classes, discriminated by ``architecture`` (built anew when the registry changes)."""
    return _union_of(tuple((name, get_architecture(name).Config) for name in architectures()))


@lru_cache(maxsize=8)
def _union_of(entries: tuple[tuple[str, type[ModelConfig]], ...]) -> TypeAdapter:
    choices = tuple(Annotated[config, Tag(name)] for name, config in entries)
    return TypeAdapter(Annotated[Union[choices], Discriminator(_architecture_name)])  # noqa: UP007


def _architecture_name(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("architecture")
    return getattr(value, "architecture", None)


def validate_model_section(value: Any) -> ModelConfig:
    """The typed hyperparameters of a model section (a dict, or an already validated Config).

    Raises:
        ValueError: no or an unknown architecture, or bad hyperparameters; naming each key
            (``model.<key>``) and, for an unknown one, the architecture's own keys.
    """
    if not isinstance(value, (dict, ModelConfig)):
        raise ValueError(f"expected a mapping of hyperparameters, got {type(value).__name__}")
    name = _architecture_name(value)
    if name is None:
        raise ValueError(f"model.architecture is required; choose one of {architectures()}")
    if name not in architectures():
        raise ValueError(f"unknown architecture {name!r}; choose one of {architectures()}")
    schema = get_architecture(name).Config
    if isinstance(value, schema):
        return value
    try:
        return model_union().validate_python(value)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # the union's tag (the architecture) leads the location
            where = ".".join(str(p) for p in ("model", *error["loc"][1:]))
            if error["type"] == "extra_forbidden":
                problems.append(
                    f"unknown key '{where}' for architecture {name!r}. Allowed keys here: "
                    f"{', '.join(sorted(schema.model_fields))}."
                )
            else:
                problems.append(f"'{where}': {error['msg']} (got {error.get('input')!r}).")
        raise ValueError(" ".join(problems)) from None


class KeysConfig(_Strict):
    """Where the labels are stored in the data files (ASE info/arrays or calculator results)."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    weight: str = "weight"
    config_type: str = "config_type"


class DataConfig(_Strict):
    """Training, validation and test data."""

    train: str = Field(
        description="labelled structures for training (any ASE-readable file, or a packed .h5)"
    )
    valid: str | None = Field(None, description="validation file; default: split off the training file")
    test: str | None = Field(None, description="test file, evaluated after training")
    train_indices: str | None = Field(
        None, description="file of 0-based frame indices of `train` used for training"
    )
    valid_indices: str | None = Field(
        None, description="file of 0-based frame indices of `train` used for validation"
    )
    test_indices: str | None = Field(
        None, description="file of 0-based frame indices of `train` used as the test set"
    )
    valid_fraction: float = Field(
        0.05, gt=0, lt=1, description="fraction split off for validation when `valid` is not given"
    )
    keys: KeysConfig = KeysConfig()
    e0s: str | dict[str, float] = Field(
        "least_squares",
        description="'least_squares', a file of isolated-atom energies, or {element: eV}",
    )
    cache_dir: str | None = Field(
        "default", description="neighbour-list cache folder; 'default' = ~/.cache/mlff, null = off"
    )
    stream: bool = Field(
        False, description="stream a packed (.h5) training set from disk instead of loading it"
    )
    chunk_structures: int = Field(
        1024, ge=1, description="with stream: structures read at once and shuffled together"
    )
    config_type_weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="{config_type: factor} multiplying the loss weight of those structures",
    )
    bootstrap_seed: int | None = Field(
        None,
        description="resample the training structures with replacement (same count) with this "
        "seed; set per member by `committee.bootstrap`",
    )
    dispersion: D3Settings | None = Field(
        None,
        description="train on the labels minus D3 dispersion (e.g. {method: d3bj, functional: "
        "pbe}); the model file stores it and every calculator adds it back",
    )


class LossConfig(_Strict):
    """Weights of the loss terms (mean squared errors)."""

    energy_weight: float = Field(1.0, ge=0, description="on the energy per atom, eV²")
    forces_weight: float = Field(100.0, ge=0, description="on force components, (eV/Å)²")
    stress_weight: float = Field(0.0, ge=0, description="on stress components, (eV/Å³)²")
    type: Literal["mse", "huber"] = "mse"
    huber_delta: float = Field(0.01, gt=0)


class SchedulerConfig(_Strict):
    """Learning-rate schedule, after an optional linear warm-up."""

    name: Literal["plateau", "cosine", "constant"] = "plateau"
    warmup_epochs: int = Field(0, ge=0)
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: LR multiplier")
    patience: int = Field(10, ge=0, description="plateau: epochs without improvement")
    min_lr: float = Field(1e-6, ge=0)


class StageTwoConfig(_Strict):
    """A second stage of training with new loss weights and learning rate ("stage two").

    Stage two begins before the first epoch at which ``start_fraction`` of ``max_epochs``
    have been trained or, with ``max_minutes``, ``start_fraction`` of the budget has been
    used, whichever comes first; early stopping during stage one also starts it.
    """

    start_fraction: float = Field(
        0.75, gt=0, lt=1, description="fraction of max_epochs (or of max_minutes) before stage two"
    )
    energy_weight: float = Field(1000.0, ge=0, description="on the energy per atom, eV²")
    forces_weight: float = Field(100.0, ge=0, description="on force components, (eV/Å)²")
    stress_weight: float | None = Field(
        None, ge=0, description="on stress components, (eV/Å³)²; null = training.loss's"
    )
    lr: float | None = Field(
        None, gt=0, description="learning rate of stage two; null = a tenth of the base rate"
    )
    swa: bool = Field(
        False, description="save the average of the weights of the stage-two epochs (SWA)"
    )


class TrainingConfig(_Strict):
    """Optimisation settings."""

    batch_size: int = Field(8, ge=1)
    batch_atoms: int | None = Field(
        None, ge=1, description="form training batches by this atom budget instead of batch_size"
    )
    num_workers: int = Field(0, ge=0, description="processes that collate batches in the background")
    valid_batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(1000, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="time budget for training")
    budget_clock: Literal["wall", "cpu"] = Field(
        "wall", description="what max_minutes counts: wall-clock time, or the CPU time of this "
        "process (all its threads), which a busy neighbour on a shared machine does not use up")
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    amsgrad: bool = False
    scheduler: SchedulerConfig = SchedulerConfig()
    ema_decay: float | None = Field(0.99, gt=0, lt=1, description="EMA of the weights; null = off")
    ema_warmup: bool = Field(
        True, description="EMA decay min(ema_decay, (1 + n) / (10 + n)) at step n, so a short "
        "run (fine-tuning) is not averaged with its starting weights")
    grad_clip: float | None = Field(10.0, gt=0, description="max gradient norm; null = off")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many epochs without a better validation loss"
    )
    loss: LossConfig = LossConfig()
    stage_two: StageTwoConfig | None = Field(
        None, description="a second stage with new loss weights and learning rate; null = off"
    )

    @property
    def budget_seconds(self) -> float:
        """The budget ``max_minutes`` in seconds of ``budget_clock``; infinite when there is
        none."""
        return self.max_minutes * 60 if self.max_minutes is not None else math.inf

    def clock(self) -> Callable[[], float]:
        """The clock (seconds) that ``max_minutes`` is counted on."""
        return time.process_time if self.budget_clock == "cpu" else time.perf_counter

    def stage_two_loss(self) -> LossConfig:
        """The loss of stage two: ``loss`` with the weights of ``stage_two``."""
        if self.stage_two is None:
            return self.loss
        s = self.stage_two
        stress = self.loss.stress_weight if s.stress_weight is None else s.stress_weight
        return self.loss.model_copy(update={"energy_weight": s.energy_weight,
                                            "forces_weight": s.forces_weight,
                                            "stress_weight": stress})


class CommitteeConfig(_Strict):
    """Train K models as a committee (ensemble) whose disagreement estimates the error.

    ``committee: 4`` is short for ``committee: {size: 4}``.
    """

    size: int = Field(ge=2, description="number of members K")
    bootstrap: bool = Field(
        False, description="train each member on a bootstrap resample of the training data"
    )
    processes: int | None = Field(
        None, ge=1, description="members trained at once; default: min(K, CPU cores)"
    )
    calibration: Literal["scale", "power_law", "isotonic"] = Field(
        "power_law", description="map from disagreement to expected error, fitted on validation data"
    )
    members: list[dict[str, Any]] = Field(
        default_factory=list, description="per-member settings merged into the config of "
        "member k (entry k modulo their number), e.g. a replay section for every other member "
        "(recipe diversity); not data, committee or seed"
    )

    @field_validator("members")
    @classmethod
    def _members_change_something(cls, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for k, entry in enumerate(members):
            forbidden = sorted(set(entry) & {"data", "committee", "seed"})
            if forbidden:
                raise ValueError(
                    f"committee.members[{k}] sets {', '.join(forbidden)}: members share the "
                    "data and the committee section, and member k's seed is always seed + k. "
                    "Vary other settings (finetune, training).")
        if members and not any(members):
            raise ValueError("committee.members holds only empty entries, so it changes no "
                             "member; remove it or give each entry settings.")
        return members

    @model_validator(mode="after")
    def _members_fit_the_size(self) -> CommitteeConfig:
        if len(self.members) > self.size:
            raise ValueError(
                f"committee.members has {len(self.members)} entries for {self.size} members: "
                f"entries {list(range(self.size, len(self.members)))} would never be used. "
                "Give at most one entry per member or raise committee.size.")
        return self

    @model_validator(mode="before")
    @classmethod
    def _from_size(cls, value: Any) -> Any:
        return {"size": value} if isinstance(value, int) else value


# the config_type of replay structures labelled by the pretrained model
REPLAY_CONFIG_TYPE = "foundation_replay"


class ReplayConfig(_Strict):
    """Replay labelled by the pretrained model itself (pseudo-labels), against forgetting.

    Copies of the training structures (or of the structures of ``structures``), rattled
    and strained, are labelled by the model being fine-tuned as it is before training
    (the pretrained network with the E0s fitted to the new data) and mixed into every
    epoch with the loss-weight factor ``weight`` (see :mod:`mlff.train.replay`).
    """

    structures: str = Field(
        "train", description="'train' (the training structures) or a file of structures "
        "(labels in it are ignored) to build the replay set from"
    )
    count: int | None = Field(
        None, ge=1, description="replay structures; null = as many as training structures"
    )
    rattle: float = Field(0.05, ge=0, description="std of the Gaussian displacements, Å")
    strain: float = Field(
        0.02, ge=0, description="largest component of the random symmetric strain (cell and "
        "positions of molecules alike)"
    )
    weight: float = Field(
        1.0, ge=0, description="factor on the loss weight of replay structures (0 is refused)"
    )


class FinetuneConfig(_Strict):
    """Start from a trained model (``*.mlff``) instead of a freshly initialised one."""

    init_from: str = Field(description="the pretrained model file (.mlff)")
    freeze: list[str] = Field(
        default_factory=list,
        description="parameter-name prefixes kept fixed, e.g. model.embedding, model.messages.0",
    )
    lr_factor: float = Field(0.1, gt=0, description="training.lr is multiplied by this")
    replay_data: str | None = Field(
        None, description="labelled structures of the original training data, mixed into training"
    )
    replay_fraction: float = Field(
        0.0, ge=0, lt=1, description="fraction of the training structures drawn from replay_data"
    )
    keep_e0s: bool | Literal["auto"] = Field(
        "auto", description="keep the pretrained model's E0s of its elements; auto: keep them "
        "unless its energies are over 1 eV/atom off the new data's (another DFT reference), "
        "then refit them; false: refit them"
    )
    replay: ReplayConfig | None = Field(
        None, description="replay set labelled by the pretrained model itself (pseudo-labels)"
    )
    anchor: float = Field(
        0.0, ge=0, description="L2-SP weight-space anchor: the loss gains anchor * the sum of "
        "squared differences of the trained weights from the pretrained ones (0: off)"
    )
    multihead: bool = Field(
        False, description="two readout heads on the shared network: 'main' learns the "
        "training data and is the model's default, 'foundation' learns the replay "
        "structures' pseudo-labels (needs replay and an architecture with readout heads)"
    )
    adapters: list[str] = Field(
        default_factory=list,
        description="element-local fine-tuning: elements (symbols) whose atoms get "
        "per-element adapters, zero at the start; then only the adapters and these "
        "elements' entries of per-element parameters train, so structures without these "
        "elements keep the pretrained model's predictions exactly (architectures with adapters)"
    )

    @field_validator("adapters")
    @classmethod
    def _known_elements(cls, value: list[str]) -> list[str]:
        from ase.data import atomic_numbers

        unknown = [s for s in value if s not in atomic_numbers or atomic_numbers[s] == 0]
        if unknown:
            raise ValueError(f"finetune.adapters: {unknown} are not element symbols (e.g. H, C, O)")
        if len(set(value)) != len(value):
            raise ValueError(f"finetune.adapters lists an element twice: {value}")
        return value


class TrainConfig(_Strict):
    """A whole training run."""

    seed: int = 0
    dtype: Precision = "float32"
    device: str = "cpu"
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: the free cores, re-checked as the load changes (mlff.threads)")
    data: DataConfig
    model: SerializeAsAny[ModelConfig] | None = Field(
        None, description="architecture name + hyperparameters; optional with finetune"
    )
    training: TrainingConfig = TrainingConfig()
    finetune: FinetuneConfig | None = Field(None, description="start from a trained model")
    committee: CommitteeConfig | None = Field(
        None, description="train a committee of models (K >= 2); null = one model"
    )
    # the model keys written in the config (not filled in by defaults): with finetune only
    # these must agree with the pretrained model
    _given_model_keys: frozenset[str] | None = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_model_keys(cls, data: Any, handler: Any) -> TrainConfig:
        config = handler(data)
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            config._given_model_keys = frozenset(data["model"])
        return config

    def given_model_keys(self) -> set[str]:
        """The model keys the config sets explicitly (all of them when unknown)."""
        if self._given_model_keys is not None:
            return set(self._given_model_keys)
        return set(self.model.model_dump()) if self.model is not None else set()

    @field_validator("model", mode="plain")
    @classmethod
    def _validate_model(cls, value: Any) -> ModelConfig | None:
        return None if value is None else validate_model_section(value)

    @model_validator(mode="after")
    def _check_split(self) -> TrainConfig:
        if (self.data.train_indices is None) != (self.data.valid_indices is None):
            raise ValueError("give both data.train_indices and data.valid_indices, or neither")
        if self.data.test_indices is not None and self.data.test is not None:
            raise ValueError("give data.test or data.test_indices, not both")
        if self.model is None and self.finetune is None:
            raise ValueError(
                "missing required key 'model' (it may be left out only with finetune.init_from)"
            )
        finetune = self.finetune
        if finetune is not None and finetune.replay_fraction > 0 and finetune.replay_data is None:
            raise ValueError("finetune.replay_fraction > 0 needs finetune.replay_data (a labelled file)")
        if finetune is not None and finetune.replay is not None:
            if finetune.replay.weight == 0:
                raise ValueError(
                    "finetune.replay.weight is 0: the replay structures would be labelled and "
                    "trained on but count for nothing in the loss. Set a weight > 0 (e.g. 1) or "
                    "remove finetune.replay")
            if self.data.stream:
                raise ValueError(
                    "finetune.replay cannot be mixed into a streamed training set (data.stream: "
                    "true); set data.stream: false")
            if REPLAY_CONFIG_TYPE in self.data.config_type_weights:
                raise ValueError(
                    f"data.config_type_weights: {REPLAY_CONFIG_TYPE!r} is the config_type of the "
                    "replay structures; set their weight with finetune.replay.weight instead")
        if finetune is not None and finetune.adapters and finetune.multihead:
            raise ValueError(
                "finetune.adapters and finetune.multihead together are not supported: the "
                "foundation head would train every element's scale. Use one or the other")
        if finetune is not None and finetune.adapters and self.training.weight_decay > 0:
            raise ValueError(
                "finetune.adapters holds the other elements' entries of per-element "
                "parameters by zeroing their gradient; weight decay would still move them. "
                "Set training.weight_decay to 0")
        if finetune is not None and finetune.multihead and finetune.replay is None:
            raise ValueError(
                "finetune.multihead is true but finetune.replay is not given: the foundation "
                "head would learn from no structure and the model would be an ordinary "
                "fine-tuned one with an untouched copy of the readout. Add finetune.replay "
                "(structures the model should keep) or remove multihead")
        if finetune is not None and finetune.replay_data is not None and finetune.replay_fraction == 0:
            raise ValueError("finetune.replay_data is given but finetune.replay_fraction is 0, so "
                             "no replay structure would be used: set replay_fraction (e.g. 0.2) "
                             "or remove replay_data")
        return self


class ResolvedConfig(TrainConfig):
    """The config of one run, as :func:`mlff.train.finetune.resolve_config` made it: the
    model section complete (taken from the pretrained model when fine-tuning) and the
    pretrained model's metadata read. Frozen, its sections too: a run cannot change it.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    model: SerializeAsAny[ModelConfig]
    # finetune.init_from and its metadata, read once per run (None without finetune)
    _pretrained: tuple[str, dict[str, Any]] | None = PrivateAttr(None)

    @classmethod
    def of(cls, config: TrainConfig, model: ModelConfig,
           pretrained: tuple[str, dict[str, Any]] | None = None) -> ResolvedConfig:
        """``config`` with the model section ``model``, frozen (nothing is validated again)."""
        fields = {name: _frozen(getattr(config, name)) for name in TrainConfig.model_fields}
        fields["model"] = _frozen(model)
        resolved = cls.model_construct(_fields_set=config.model_fields_set | {"model"}, **fields)
        resolved._given_model_keys = config._given_model_keys
        resolved._pretrained = pretrained
        return resolved


def _frozen(value: Any) -> Any:
    """A frozen copy of a config section (and of the sections inside it)."""
    if not isinstance(value, BaseModel):
        return value
    fields = {name: _frozen(getattr(value, name)) for name in type(value).model_fields}
    return _frozen_class(type(value)).model_construct(_fields_set=value.model_fields_set,
                                                       **fields)


@lru_cache(maxsize=None)
def _frozen_class(cls: type[BaseModel]) -> type[BaseModel]:
    """``cls`` frozen; its instances equal those of ``cls`` with the same values."""
    if cls.model_config.get("frozen"):
        return cls

    def __eq__(self: BaseModel, other: object) -> bool:  # noqa: N807
        if not isinstance(other, BaseModel):
            return NotImplemented
        unfrozen = getattr(type(other), "__unfrozen__", type(other))
        return unfrozen is cls and self.model_dump() == other.model_dump()

    return type(cls.__name__, (cls,), {
        "model_config": ConfigDict(**cls.model_config, frozen=True), "__unfrozen__": cls,
        "__eq__": __eq__, "__hash__": lambda self: hash(repr(self.model_dump())),
        "__module__": cls.__module__, "__doc__": cls.__doc__, "__qualname__": cls.__qualname__})


def _section_type(annotation: Any) -> Any:
    """``Section | None`` -> ``Section``; other annotations unchanged."""
    options = [a for a in get_args(annotation) if a is not type(None)]
    return options[0] if len(options) == 1 else annotation


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at a nested location of the schema."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _section_type(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _format_error(error: dict, source: str) -> str:
    loc = tuple(error["loc"])
    if not loc:  # a check across sections
        return f"{source}: {error['msg'].removeprefix('Value error, ')}"
    where = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(TrainConfig, loc)
        return f"{source}: unknown key '{where}'. Allowed keys here: {', '.join(allowed)}."
    if error["type"] == "missing":
        return f"{source}: missing required key '{where}'."
    return f"{source}: '{where}': {error['msg']} (got {error.get('input')!r})."


def validate_config(raw: dict[str, Any], source: str = "config",
                    overridden: dict[str, str] | None = None) -> TrainConfig:
    """Validate a config dict.

    Args:
        raw: the settings.
        source: what an error names (the config file).
        overridden: dotted key -> the ``KEY=VALUE`` override that set it; an error about
            such a key names the override (``--set ...``) instead of ``source``.

    Raises:
        ConfigError: naming every bad key, with the allowed keys for unknown ones.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}.")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            where = _override_source(error, overridden or {}) or source
            if error["loc"] and error["loc"][0] == "model" and error["type"] == "value_error":
                inner = str(error.get("ctx", {}).get("error", error["msg"]))
                messages.append(f"{where}: {inner}")
            else:
                messages.append(_format_error(error, where))
        raise ConfigError("\n".join(messages)) from None


def _override_source(error: dict, overridden: dict[str, str]) -> str | None:
    """``--set KEY=VALUE`` (``overrides`` from Python) if an override set the key of ``error``.

    The model section is checked as a whole (loc ``model``): there the key is found in the
    message.
    """
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc)
    for dotted, item in overridden.items():
        in_model = (loc == ("model",) and dotted.startswith("model.")
                    and dotted.split(".")[-1] in str(error.get("msg", "")))
        if where == dotted or where.startswith(dotted + ".") or in_model:
            return f"{argument('--set', 'overrides')} {item!r}"
    return None


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Set dotted keys from ``KEY=VALUE`` strings (values parsed as YAML).

    ``training.max_minutes=5`` sets ``raw["training"]["max_minutes"] = 5``.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{argument('--set', 'overrides')} {item!r}: expected KEY=VALUE, "
                              "e.g. training.lr=0.001")
        dotted, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{argument('--set', 'overrides')} {item!r}: the value is not valid "
                              f"YAML ({exc}).") from None
        node = raw
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{argument('--set', 'overrides')} {item!r}: '{part}' is not a "
                                  f"section of {source}.")
            node = child
        node[parts[-1]] = value
    return raw


def read_yaml(path: Path) -> Any:
    """The parsed content of a YAML config file.

    Raises:
        ConfigError: the file is missing or not valid YAML.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); give the YAML config file.") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read and validate a YAML training config.

    Relative data paths are resolved against the config file's folder.

    Args:
        path: the YAML file.
        overrides: ``KEY=VALUE`` strings applied before validation (see
            :func:`apply_overrides`).
    """
    path = Path(path)
    raw = read_yaml(path)
    overridden = {item.split("=", 1)[0].strip(): item for item in overrides or []}
    if overrides:
        raw = apply_overrides(raw if isinstance(raw, dict) else {}, overrides, str(path))
    config = validate_config(raw, str(path), overridden)
    return resolve_paths(config, path.parent)


def resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    """Make the data paths of ``config`` absolute, relative to ``base``."""
    data = config.data
    updates = {}
    for name in ("train", "valid", "test", "train_indices", "valid_indices", "test_indices"):
        value = getattr(data, name)
        if value is not None and not Path(value).is_absolute():
            updates[name] = str((base / value).resolve())
    if isinstance(data.e0s, str) and data.e0s != "least_squares" and not Path(data.e0s).is_absolute():
        updates["e0s"] = str((base / data.e0s).resolve())
    if data.cache_dir not in (None, "default") and not Path(data.cache_dir).is_absolute():
        updates["cache_dir"] = str((base / data.cache_dir).resolve())
    resolved = {"data": data.model_copy(update=updates)}
    if config.finetune is not None:
        finetune = {}
        for name in ("init_from", "replay_data"):
            value = getattr(config.finetune, name)
            if value is not None and not Path(value).is_absolute():
                finetune[name] = str((base / value).resolve())
        replay = config.finetune.replay
        if replay is not None and replay.structures != "train" \
                and not Path(replay.structures).is_absolute():
            finetune["replay"] = replay.model_copy(
                update={"structures": str((base / replay.structures).resolve())})
        resolved["finetune"] = config.finetune.model_copy(update=finetune)
    if config.committee is not None and config.committee.members:
        resolved["committee"] = config.committee.model_copy(update={"members": [
            member_paths_resolved(entry, base) for entry in config.committee.members]})
    return config.model_copy(update=resolved)


def member_paths_resolved(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    """A ``committee.members`` entry with its fine-tuning file paths (``init_from``,
    ``replay_data``, ``replay.structures``) made absolute, relative to ``base``."""
    finetune = entry.get("finetune")
    if not isinstance(finetune, dict):
        return entry

    def absolute(value: Any) -> Any:
        if not isinstance(value, str) or value == "train" or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    finetune = {key: absolute(value) if key in ("init_from", "replay_data") else value
                for key, value in finetune.items()}
    replay = finetune.get("replay")
    if isinstance(replay, dict) and "structures" in replay:
        finetune["replay"] = {**replay, "structures": absolute(replay["structures"])}
    return {**entry, "finetune": finetune}
