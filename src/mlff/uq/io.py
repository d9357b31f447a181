"""Committee model files, and one loader for single models and committees.

A committee file is an ordinary ``.mlff`` zip whose ``metadata.json`` has
``"committee": K``, the metadata of each member under ``"members"`` and the calibration
(or ``null``) under ``"calibration"``; ``weights.safetensors`` holds the member tensors
as ``members.{k}.{name}``. The top-level ``species``, ``cutoff``, ``architecture`` and
``dtype`` are member 0's, so that tools reading only the metadata see a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, overload

import torch

from mlff.errors import ModelFileError
from mlff.models.io import (
    KEPT_METADATA,
    check_sizes,
    load_weights,
    model_metadata,
    potential_from_archive,
    potential_from_metadata,
    read_archive,
    weight_shapes,
    write_archive,
)
from mlff.models.potential import Potential
from mlff.models.precision import Precision, torch_dtype
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


@overload
def load_model(path: str | Path, device: str | torch.device = ...,
               dtype: torch.dtype | Precision | None = ..., *,
               single: Literal[True]) -> Potential: ...
@overload
def load_model(path: str | Path, device: str | torch.device = ...,
               dtype: torch.dtype | Precision | None = ..., *, single: bool = ...
               ) -> Potential | Committee: ...
def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | Precision | None = None,
    *,
    single: bool = False,
) -> Potential | Committee:
    """Load a ``.mlff`` file: a :class:`Potential`, or a :class:`Committee` for committee
    files (both are :class:`~mlff.models.predict.EnergyModel`). The one loader of model files.

    Args:
        path: the model file.
        device: where to put the model.
        dtype: ``"float32"``/``"float64"`` or a torch dtype; default: as saved.
        single: the caller needs one model: a committee file is refused.

    Raises:
        ModelFileError: missing, corrupt or incompatible file; a committee file when
            ``single``.
    """
    path = Path(path)
    metadata, weights = read_archive(path, weights=True)
    if "committee" not in metadata:
        model: Potential | Committee = potential_from_archive(metadata, weights, path)
    elif single:
        raise ModelFileError(
            f"{path}: a committee of {metadata['committee']} models, where one model is "
            "needed; give the model file of one member."
        )
    else:
        model = _committee_from_archive(metadata, weights, path)
    if dtype is not None:
        model.to(dtype=torch_dtype(dtype))
    return model.to(device).eval()


def _committee_from_archive(metadata: dict[str, Any], weights: bytes, path: Path) -> Committee:
    """The Committee a committee archive holds, in its saved dtype."""
    shapes = weight_shapes(weights, path)
    for member in metadata["members"]:
        check_sizes(member["hyperparameters"], shapes, path)
    try:
        members = [potential_from_metadata(m, path) for m in metadata["members"]]
        committee = Committee(members, calibration=metadata.get("calibration"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the committee metadata is not valid ({exc}).") from None
    load_weights(committee, weights, shapes, path)
    committee.metadata = {k: v for k, v in metadata.items() if k in KEPT_METADATA}
    return committee
