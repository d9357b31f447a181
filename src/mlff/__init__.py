"""mlff: machine-learned force fields, from labelled structures to production MD.

Public API:
    read_structures: labelled structures from any file ASE reads.
    load_model / save_model: the ``.mlff`` model file (load_model also reads committees).
    MLFFCalculator: the ASE calculator (with uncertainties for committees).
    train: train a model, or a committee when the config has ``committee: K``.
    import_model: a model trained by another code (SevenNet, MACE) as an mlff model.
    MLFFError: the base of every error a user can cause.
"""

__version__ = "0.1.0"

from pathlib import Path

# Import the subpackage first, so that the function below, not the subpackage, is the
# attribute `mlff.train` (Python binds a subpackage to its parent only when first imported).
import mlff.train as _train_package  # noqa: E402, F401
from mlff.errors import MLFFError

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


def train(config, out_dir=None, **kwargs):
    """Train a model (:func:`mlff.train.trainer.train`) or, when the config has a
    ``committee`` section, a committee (:func:`mlff.uq.training.train_committee`)."""
    from mlff.train.config import load_config, validate_config
    from mlff.train.trainer import train as _train

    if isinstance(config, dict):
        config = validate_config(config)
    elif not hasattr(config, "committee"):  # a path
        if out_dir is None:
            out_dir = f"runs/{Path(config).stem}"
        config = load_config(config, kwargs.pop("overrides", None))
    if config.committee is not None:
        from mlff.uq.training import train_committee

        return train_committee(config, out_dir=out_dir, **kwargs)
    return _train(config, out_dir=out_dir, **kwargs)


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
