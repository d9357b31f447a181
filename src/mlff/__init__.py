"""mlff: machine-learned force fields, from labelled structures to production MD.

Public API:
    read_structures: labelled structures from any file ASE reads.
    load_model / save_model: the ``.mlff`` model file.
    MLFFCalculator: the ASE calculator.
    train: train a model from a config (dict, path or TrainConfig).
    MLFFError: the base of every error a user can cause.
"""

__version__ = "0.1.0"

from mlff.calculators.ase import MLFFCalculator
from mlff.data.readers import LabelKeys, read_structures
from mlff.errors import MLFFError
from mlff.models.io import load_model, save_model

# Import the subpackage first, so that the function below, not the subpackage, is the
# attribute `mlff.train` (Python binds a subpackage to its parent only when first imported).
import mlff.train as _train_package  # noqa: E402, F401


def train(config, out_dir=None, **kwargs):
    """Train a model; see :func:`mlff.train.trainer.train`."""
    from mlff.train.trainer import train as _train

    return _train(config, out_dir=out_dir, **kwargs)


__all__ = [
    "LabelKeys",
    "MLFFCalculator",
    "MLFFError",
    "__version__",
    "load_model",
    "read_structures",
    "save_model",
    "train",
]
