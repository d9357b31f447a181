"""Checkpoints for resuming: plain tensors and numbers, read with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mlff.errors import ModelFileError

CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically (a kill mid-write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"checkpoint_version": CHECKPOINT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is executed).

    Raises:
        ModelFileError: missing, corrupt or of an unknown version.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise ModelFileError(f"{path}: not a readable mlff checkpoint ({exc}).") from None
    version = state.get("checkpoint_version") if isinstance(state, dict) else None
    if version != CHECKPOINT_VERSION:
        raise ModelFileError(
            f"{path}: checkpoint version {version}, this mlff reads version {CHECKPOINT_VERSION}."
        )
    return state
