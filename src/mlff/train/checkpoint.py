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
        # torch's message advises weights_only=False, which would run code from the file
        reason = next((line.strip() for line in str(exc).splitlines()
                       if "GLOBAL" in line or "Unsupported operand" in line), None)
        reason = reason or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(
            f"{path}: not a readable mlff checkpoint ({type(exc).__name__}: {reason[:300]}). "
            "It is damaged or was not written by mlff (it is never loaded in a way that runs "
            "code); train again without --resume, or into a new --out folder."
        ) from None
    version = state.get("checkpoint_version") if isinstance(state, dict) else None
    if version != CHECKPOINT_VERSION:
        raise ModelFileError(
            f"{path}: checkpoint version {version}, this mlff reads version {CHECKPOINT_VERSION}."
        )
    return state
