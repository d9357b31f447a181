"""Options shared by several subcommands: device and dtype of a model, label keys."""

from __future__ import annotations

import argparse

import torch

from mlff.data.readers import LabelKeys
from mlff.errors import ConfigError
from mlff.models.heads import model_with_head
from mlff.models.potential import Potential
from mlff.models.precision import PRECISIONS
from mlff.uq.committee import Committee
from mlff.uq.io import load_model


def add_dtype_option(parser: argparse.ArgumentParser,
                     what: str = "floating-point precision to run the model in") -> None:
    """Add ``--dtype``, one of :data:`~mlff.models.precision.PRECISIONS`; its default, None,
    is always the model's own dtype (a float64 model is never cast down unasked)."""
    parser.add_argument("--dtype", choices=PRECISIONS, default=None,
                        help=f"{what} (default: the model's own)")


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` and ``--dtype`` (:func:`add_dtype_option`)."""
    parser.add_argument("--device", default="cpu",
                        help="torch device to run on: cpu, cuda, cuda:1, ... (default: cpu)")
    add_dtype_option(parser)


def add_label_key_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--energy-key``, ``--forces-key``, ``--stress-key`` and ``--config-type-key``."""
    defaults = LabelKeys()
    group = parser.add_argument_group("label keys (where the data file stores each label)")
    group.add_argument("--energy-key", default=defaults.energy, metavar="K",
                       help=f"total energy in eV (default: {defaults.energy})")
    group.add_argument("--forces-key", default=defaults.forces, metavar="K",
                       help=f"per-atom forces in eV/Å (default: {defaults.forces})")
    group.add_argument("--stress-key", default=defaults.stress, metavar="K",
                       help=f"stress in eV/Å³, ASE sign (default: {defaults.stress})")
    group.add_argument("--config-type-key", default=defaults.config_type, metavar="K",
                       help="per-structure category used to split the metrics "
                            f"(default: {defaults.config_type})")


def label_keys(args: argparse.Namespace) -> LabelKeys:
    """Build the :class:`LabelKeys` given by :func:`add_label_key_options`' options."""
    return LabelKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key,
                     config_type=args.config_type_key)


def resolve_device(name: str) -> torch.device:
    """``name`` as a torch device that exists here.

    Raises:
        ConfigError: the name is not a device, or its accelerator is not available.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"--device {name!r} is not a torch device; use cpu, cuda, cuda:0, ..."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are available."
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu.")
    return device


def add_head_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--head``: the readout head of a multi-head model."""
    parser.add_argument("--head", default=None, metavar="NAME",
                        help="the readout head of a multi-head model to use "
                             "(default: the model's default head)")


def model_from_args(args: argparse.Namespace) -> Potential | Committee:
    """:func:`~mlff.uq.io.load_model` of ``args.model`` on ``args.device`` in ``args.dtype``
    (see :func:`add_device_options`), evaluating head ``args.head`` where the parser has
    :func:`add_head_option`."""
    model = load_model(args.model, device=resolve_device(args.device), dtype=args.dtype)
    return model_with_head(model, getattr(args, "head", None))
