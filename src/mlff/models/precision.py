"""The floating-point precision a model is stored and run in: one name for it everywhere.

Configs, model files, the ``--dtype`` option of every command and the Python API all
take a :data:`Precision` (``"float32"`` or ``"float64"``) or the torch dtype itself;
:func:`torch_dtype` is the one place that turns it into a torch dtype.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from mlff.errors import ConfigError

Precision = Literal["float32", "float64"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def torch_dtype(precision: Precision | str | torch.dtype, where: str = "dtype") -> torch.dtype:
    """``"float32"`` -> ``torch.float32`` (a torch dtype of a precision passes through).

    Raises:
        ConfigError: not one of :data:`PRECISIONS`, naming ``where`` it was given.
    """
    name = str(precision).removeprefix("torch.")
    if name not in PRECISIONS:
        raise ConfigError(f"{where} {precision!r}: choose {' or '.join(PRECISIONS)}.")
    return getattr(torch, name)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")
