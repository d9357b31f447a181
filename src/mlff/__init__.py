"""mlff: machine-learned force fields, from labelled structures to production MD.

Public API:
    read_structures: labelled structures from any file ASE reads.
    load_model / save_model: the ``.mlff`` model file (load_model also reads committees).
    MLFFCalculator: the ASE calculator (with uncertainties for committees).
    train: train a model, or a committee when the config has ``committee: K``.
    import_model: a model trained by another code (SevenNet, MACE) as an mlff model.
    MLFFError: the base of every error a user can cause.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlff._version import __version__

# Import the subpackage first, so that the function below, not the subpackage, is the
# attribute `mlff.train` (Python binds a subpackage to its parent only when first imported).
import mlff.train as _train_package  # noqa: E402, F401
from mlff.errors import MLFFError

if TYPE_CHECKING:
    from mlff.train.config import TrainConfig
    from mlff.train.trainer import TrainResult
    from mlff.train.committee import CommitteeResult

# the rest is imported on first use (PEP 562): `import mlff` stays light (no torch), which
# matters in labelling workers that only need mlff.oracles
_LAZY = {
    "MLFFCalculator": "mlff.calculators.ase",
    "LabelKeys": "mlff.data.readers",
    "read_structures": "mlff.data.readers",
    "save_model": "mlff.models.io",
    "load_model": "mlff.uq.io",
    "import_model": "mlff.imports",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlff' has no attribute {name!r}")


def train(
    config: str | Path | dict[str, Any] | TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    overrides: list[str] | None = None,
) -> TrainResult | CommitteeResult:
    """Train a model, or a committee when the config has a ``committee`` section.

    Training runs until ``training.max_epochs`` or ``training.max_minutes`` of wall clock
    (20 minutes unless the config says otherwise); pass e.g.
    ``overrides=["training.max_minutes=2"]`` for a short run.

    Args:
        config: the path of a YAML config (data paths relative to it), a dict of the same
            settings, or a :class:`~mlff.train.config.TrainConfig`.
        out_dir: output folder: ``model.mlff``, checkpoints, ``log.jsonl``, ``metrics.json``
            (default ``runs/<config file name>``, or ``runs/train``).
        resume: continue the run in ``out_dir`` from its last checkpoint.
        progress: print the summary and progress (to stderr).
        overrides: ``"KEY=VALUE"`` settings applied before validation, e.g.
            ``["training.max_minutes=5", "seed=3"]`` (values are YAML).

    Returns:
        A :class:`~mlff.train.trainer.TrainResult` (``model_path``, metrics, ...), or a
        :class:`~mlff.train.committee.CommitteeResult` for a committee.

    Raises:
        MLFFError: a bad config or data file, or an existing run in ``out_dir`` without
            ``resume``; the message names the setting.
    """
    from mlff.errors import ConfigError
    from mlff.train.config import apply_overrides, load_config, validate_config
    from mlff.train.trainer import train as _train

    if isinstance(config, dict):
        overridden = {item.split("=", 1)[0].strip(): item for item in overrides or []}
        raw = apply_overrides(copy.deepcopy(config), overrides or [], "config")
        config = validate_config(raw, "config", overridden)
    elif isinstance(config, (str, Path)):
        if out_dir is None:
            out_dir = f"runs/{Path(config).stem}"
        config = load_config(config, overrides)
    elif overrides:
        raise ConfigError("overrides apply to a config file or dict; change the TrainConfig "
                          "with config.model_copy(update=...) instead.")
    if config.committee is not None:
        from mlff.train.committee import train_committee

        return train_committee(config, out_dir=out_dir, resume=resume, progress=progress)
    return _train(config, out_dir=out_dir, resume=resume, progress=progress)


__all__ = [
    "LabelKeys",
    "MLFFCalculator",
    "MLFFError",
    "__version__",
    "import_model",
    "load_model",
    "read_structures",
    "save_model",
    "train",
]
