"""The ``mlff learn`` configuration (YAML, validated by pydantic; unknown keys are errors).

Paths are relative to the config file. Units: eV/Å for trust levels, K, GPa, fs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlff.errors import ConfigError
from mlff.oracles.executors import ExecutorConfig
from mlff.train.config import TrainConfig, member_paths_resolved, read_yaml, validate_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GenerateConfig(_Strict):
    """Reference MD with the oracle for the initial data (``mlff generate``)."""

    structure: str = Field(description="start structure (any file ASE reads; first frame)")
    temperature: float = Field(300.0, gt=0, description="K")
    steps: int = Field(100, ge=1)
    timestep: float = Field(1.0, gt=0, description="fs")
    every: int = Field(10, ge=1, description="keep every this many steps")


class InitialConfig(_Strict):
    """Where the first labels come from (any combination)."""

    data: list[str] = Field(
        default_factory=list, description="labelled files whose labels are imported as they are"
    )
    structures: str | None = Field(
        None, description="unlabelled structures labelled by the oracle before iteration 1"
    )
    generate: GenerateConfig | None = None


class ExploreConfig(_Strict):
    """MD walkers with the committee; walker w starts from frame w mod M of ``structures``
    at temperature w mod T (and pressure w mod P)."""

    structures: str = Field(description="start structures (any file ASE reads)")
    walkers: int = Field(4, ge=1, description="walkers per iteration")
    temperatures: list[float] = Field(default_factory=lambda: [300.0], min_length=1)
    pressures: list[float | None] | None = Field(
        None, description="GPa; NPT (Berendsen) when given; a null entry: that walker runs NVT "
        "(e.g. [0.0, null] for bulk under NPT beside a slab under NVT)")
    steps: int = Field(500, ge=1, description="MD steps per walker")
    timestep: float = Field(1.0, gt=0, description="fs")
    sample_every: int = Field(10, ge=1, description="steps between sampled frames")
    friction: float = Field(0.01, gt=0, description="Langevin friction, 1/fs")
    min_distance: float | None = Field(
        None, gt=0, description="Å: a walker whose atoms come closer stops (frame counted failed)"
    )


class SelectConfig(_Strict):
    """Which explored frames get labelled."""

    lower: float = Field(gt=0, description="trust level, eV/Å: below it a frame is accurate")
    upper: float = Field(gt=0, description="eV/Å: at or above it a frame failed (walker stops)")
    max_labels: int = Field(10, ge=1, description="labels per iteration")
    strategy: Literal["uncertainty", "random"] = Field(
        "uncertainty", description="random: the baseline, frames drawn whatever their uncertainty"
    )

    @model_validator(mode="after")
    def _ordered(self) -> SelectConfig:
        if self.upper <= self.lower:
            raise ValueError(f"select.upper ({self.upper}) must be above select.lower ({self.lower})")
        return self


class StopConfig(_Strict):
    """When the loop ends (whichever comes first)."""

    max_iterations: int = Field(5, ge=1)
    accurate_fraction: float | None = Field(
        0.99, gt=0, le=1, description="stop when this fraction of explored frames is accurate"
    )
    test_forces_mae: float | None = Field(
        None, gt=0, description="stop when the test-set force MAE is below this, meV/Å"
    )
    max_labels: int | None = Field(None, ge=1, description="budget of oracle labels in all")


class RetrainConfig(_Strict):
    """How each iteration's committee is trained."""

    warm_start: bool = Field(True, description="members start from the previous iteration's")
    warm_max_epochs: int | None = Field(
        None, ge=1, description="training.max_epochs of warm-started runs; null = the same"
    )
    warm_lr_factor: float = Field(1.0, gt=0, description="finetune.lr_factor of warm starts")


class LearnConfig(_Strict):
    """A whole active-learning run."""

    seed: int = 0
    train: dict[str, Any] = Field(
        description="a training config (with committee: K); data.train is set by the loop"
    )
    oracle: dict[str, Any] | str = Field(description="oracle config, inline or a YAML file")
    executor: ExecutorConfig = ExecutorConfig()
    initial: InitialConfig = InitialConfig()
    explore: ExploreConfig
    select: SelectConfig
    stop: StopConfig = StopConfig()
    retrain: RetrainConfig = RetrainConfig()
    test: str | None = Field(None, description="fixed labelled test set, evaluated every iteration")

    @model_validator(mode="after")
    def _needs_committee(self) -> LearnConfig:
        if not self.train.get("committee"):
            raise ValueError("train.committee is required (e.g. committee: 4): the loop selects "
                             "by committee disagreement")
        return self


def load_learn_config(path: str | Path) -> LearnConfig:
    """Read, validate and resolve a ``mlff learn`` YAML config (paths made absolute).

    Raises:
        ConfigError: missing file, bad YAML, or invalid keys (each named).
    """
    path = Path(path)
    return resolve(validate_learn_config(read_yaml(path), str(path)), path.parent)


def validate_learn_config(raw: Any, source: str = "learn config") -> LearnConfig:
    """Validate a config dict, with errors that name each bad key; the ``train`` section is
    checked as the training config of an iteration (:func:`train_config`), so that a bad
    training setting fails here, before anything is labelled."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values.")
    try:
        config = LearnConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "(top level)"
            if error["type"] == "extra_forbidden":
                problems.append(f"{source}: unknown key '{where}'.")
            else:
                problems.append(f"{source}: '{where}': {error['msg']}.")
        raise ConfigError("\n".join(problems)) from None
    train_config(config, "train.xyz", source=f"{source}: train")
    if config.retrain.warm_start:
        train_config(config, "train.xyz", warm_from="model.mlff", source=f"{source}: train")
    return config


def train_config(config: LearnConfig, data: str, warm_from: str | None = None,
                 source: str = "learn config: train") -> TrainConfig:
    """The validated training config of one iteration: the ``train`` section with
    ``data.train`` = ``data``, the run's seed unless the section sets its own, and, with
    ``warm_from`` (the members' model files, ``{member}`` in the name), a warm start as
    ``retrain`` says.

    Raises:
        ConfigError: a bad setting of the ``train`` section, named.
    """
    raw = copy.deepcopy(config.train)
    if isinstance(raw.get("data", {}), dict):
        raw.setdefault("data", {})["train"] = data
    raw.setdefault("seed", config.seed)
    retrain = config.retrain
    if warm_from is not None:
        # the user's fine-tuning settings (freeze, replay, E0s) hold for warm starts too
        raw["finetune"] = {**(raw.get("finetune") or {}), "init_from": warm_from,
                           "lr_factor": retrain.warm_lr_factor}
        if retrain.warm_max_epochs is not None and isinstance(raw.get("training", {}), dict):
            raw.setdefault("training", {})["max_epochs"] = retrain.warm_max_epochs
    return validate_config(raw, source)


def resolve(config: LearnConfig, base: Path) -> LearnConfig:
    """Make the file paths of ``config`` absolute, relative to ``base``."""
    def absolute(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    initial = config.initial.model_copy(update={
        "data": [absolute(p) for p in config.initial.data],
        "structures": absolute(config.initial.structures),
        "generate": (None if config.initial.generate is None else config.initial.generate
                     .model_copy(update={"structure": absolute(config.initial.generate.structure)})),
    })
    oracle = absolute(config.oracle) if isinstance(config.oracle, str) else config.oracle
    explore = config.explore.model_copy(update={"structures": absolute(config.explore.structures)})
    train = dict(config.train)
    if isinstance(train.get("data"), dict):
        data = dict(train["data"])
        for key in ("valid", "test", "e0s"):
            if isinstance(data.get(key), str) and data[key] != "least_squares":
                data[key] = absolute(data[key])
        train["data"] = data
    if isinstance(train.get("finetune"), dict):  # a start from a (foundation) model file
        finetune = dict(train["finetune"])
        if isinstance(finetune.get("init_from"), str):
            finetune["init_from"] = absolute(finetune["init_from"])
        replay = finetune.get("replay")
        if isinstance(replay, dict) and replay.get("structures", "train") != "train":
            finetune["replay"] = {**replay, "structures": absolute(replay["structures"])}
        train["finetune"] = finetune
    committee = train.get("committee")
    if isinstance(committee, dict) and isinstance(committee.get("members"), list):
        train["committee"] = {**committee, "members": [
            member_paths_resolved(entry, base) if isinstance(entry, dict) else entry
            for entry in committee["members"]]}
    return config.model_copy(update={"initial": initial, "oracle": oracle, "explore": explore,
                                     "test": absolute(config.test), "train": train})
