"""Committee model files, and one loader for single models and committees.

A committee file is an ordinary ``.mlff`` zip whose ``metadata.json`` has
``"committee": K``, the metadata of each member under ``"members"`` and the calibration
(or ``null``) under ``"calibration"``; ``weights.safetensors`` holds the member tensors
as ``members.{k}.{name}``. The top-level ``species``, ``cutoff``, ``architecture`` and
``dtype`` are member 0's, so that tools reading only the metadata see a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlff.errors import ModelFileError
from mlff.models.io import (
    _DTYPES,
    KEPT_METADATA,
    check_sizes,
    load_weights,
    model_metadata,
    potential_from_metadata,
    read_archive,
    weight_shapes,
    write_archive,
)
from mlff.models.io import load_model as load_potential
from mlff.models.potential import Potential
from mlff.uq.committee import Committee


def save_committee(committee: Committee, path: str | Path) -> Path:
    """Write ``committee`` to one ``.mlff`` file, atomically."""
    members = [model_metadata(m) for m in committee.members]
    metadata: dict[str, Any] = {
        **members[0],
        "committee": committee.size,
        "members": members,
        "calibration": committee.calibration,
        **committee.metadata,
    }
    return write_archive(path, metadata, committee.state_dict())


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None
) -> Potential | Committee:
    """Load a ``.mlff`` file: a :class:`Potential`, or a :class:`Committee` for committee files.

    Args:
        path: the model file.
        device: where to put the model.
        dtype: ``"float32"``/``"float64"`` or a torch dtype; default: as saved.

    Raises:
        ModelFileError: missing, corrupt or incompatible file.
    """
    path = Path(path)
    metadata, weights = read_archive(path, weights=True)
    if "committee" not in metadata:
        return load_potential(path, device=device, dtype=dtype)
    shapes = weight_shapes(weights, path)
    for member in metadata["members"]:
        check_sizes(member["hyperparameters"], shapes, path)
    try:
        members = [potential_from_metadata(m, path) for m in metadata["members"]]
        committee = Committee(members, calibration=metadata.get("calibration"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the committee metadata is not valid ({exc}).") from None
    load_weights(committee, weights, shapes, path)
    committee.metadata = {
        k: v for k, v in metadata.items() if k in KEPT_METADATA
    }
    if dtype is not None:
        committee.to(dtype=_DTYPES[dtype] if isinstance(dtype, str) else dtype)
    return committee.to(device).eval()
