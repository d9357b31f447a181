"""The ``*.mlff`` model file: a zip of ``metadata.json`` and ``weights.safetensors``.

Opening a model file executes no code: the metadata is JSON, the weights are plain
tensors, and the module is rebuilt from the architecture registry. ``format_version``
is raised whenever the layout changes; older files are upgraded one version at a time.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols
from pydantic import ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mlff.errors import ModelFileError
from mlff.models.potential import Potential
from mlff.models.registry import build_model

# 2: a file may hold a committee (``"committee": K``, weights ``members.{k}.*``, read by
# mlff.uq.io); single-potential files are unchanged from 1
FORMAT_VERSION = 2
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "weights.safetensors"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def model_metadata(potential: Potential) -> dict[str, Any]:
    """Everything needed to rebuild ``potential``, plus its provenance, as plain JSON data."""
    from mlff import __version__

    return {
        "format_version": FORMAT_VERSION,
        "mlff_version": __version__,
        "torch_version": torch.__version__,
        "architecture": potential.hyperparameters["architecture"],
        "hyperparameters": potential.hyperparameters,
        "species": potential.species,
        "species_symbols": [chemical_symbols[z] for z in potential.species],
        "cutoff": potential.cutoff,
        "e0s": {chemical_symbols[z]: float(e) for z, e in zip(potential.species, potential.e0s.tolist())},
        "scale": float(potential.scale),
        "shift": float(potential.shift),
        "dtype": dtype_name(potential.dtype),
        "units": {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å³"},
        **potential.metadata,
    }


def save_model(potential: Potential, path: str | Path) -> Path:
    """Write ``potential`` to ``path`` (a ``.mlff`` zip), atomically.

    Extra provenance (``data_fingerprint``, ``test_metrics``, ``training``) is taken from
    ``potential.metadata``.
    """
    return write_archive(path, model_metadata(potential), potential.state_dict())


def write_archive(path: str | Path, metadata: dict[str, Any], state: dict[str, torch.Tensor]) -> Path:
    """Write a model file from its metadata and tensors, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(metadata, indent=2))
        archive.writestr(WEIGHTS_NAME, save_safetensors(state))
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a model file, without building the model."""
    metadata, _ = read_archive(Path(path), weights=False)
    return metadata


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None
) -> Potential:
    """Load a ``.mlff`` model file.

    Args:
        path: the model file.
        device: where to put the model.
        dtype: ``torch.float32``/``"float32"`` or float64; default: the dtype it was saved in.

    Raises:
        ModelFileError: the file is missing, not a model file, corrupt, or newer than
            this version of mlff understands.
    """
    path = Path(path)
    metadata, weights = read_archive(path, weights=True)
    if "committee" in metadata:
        raise ModelFileError(
            f"{path}: a committee of {metadata['committee']} models; load it with "
            "mlff.load_model (mlff.uq.io.load_model), not mlff.models.io.load_model."
        )
    potential = potential_from_metadata(metadata, path)
    try:
        potential.load_state_dict(load_safetensors(weights), strict=True)
    except (RuntimeError, Exception) as exc:
        raise ModelFileError(f"{path}: the weights do not fit the architecture ({exc}).") from None
    if dtype is not None:
        potential.to(dtype=_DTYPES[dtype] if isinstance(dtype, str) else dtype)
    return potential.to(device).eval()


def potential_from_metadata(metadata: dict[str, Any], path: Path) -> Potential:
    """A Potential built as ``metadata`` describes, in its saved dtype, weights not loaded.

    Raises:
        ModelFileError: the metadata does not describe a valid model (``path`` is named).
    """
    try:
        model = build_model(metadata["hyperparameters"], len(metadata["species"]))
        potential = Potential(
            model,
            metadata["hyperparameters"],
            metadata["species"],
            [metadata["e0s"][chemical_symbols[z]] for z in metadata["species"]],
            metadata["scale"],
            metadata["shift"],
        )
        saved_dtype = _DTYPES[metadata["dtype"]]
    except (KeyError, ValidationError, ValueError) as exc:
        raise ModelFileError(f"{path}: the metadata does not describe a valid model ({exc}).") from None
    potential.to(dtype=saved_dtype)
    potential.metadata = {
        k: v for k, v in metadata.items() if k in ("data_fingerprint", "test_metrics", "training", "provenance")
    }
    return potential


def read_archive(path: Path, weights: bool) -> tuple[dict[str, Any], bytes]:
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if METADATA_NAME not in names or WEIGHTS_NAME not in names:
                raise ModelFileError(
                    f"{path}: not an mlff model file (it lacks {METADATA_NAME} or {WEIGHTS_NAME})."
                )
            metadata = json.loads(archive.read(METADATA_NAME))
            data = archive.read(WEIGHTS_NAME) if weights else b""
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{path}: not an mlff model file (not a zip archive). Model files end in .mlff "
            "and are written by `mlff train`."
        ) from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: corrupt metadata.json ({exc}).") from None
    version = metadata.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path}: metadata.json has no format_version.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in model-file format {version} by mlff "
            f"{metadata.get('mlff_version', '?')}; this mlff reads up to format {FORMAT_VERSION}. "
            "Upgrade mlff (pip install -U mlff)."
        )
    return _upgrade(metadata), data


def _upgrade(metadata: dict[str, Any]) -> dict[str, Any]:
    """Bring older metadata to the current format, one version at a time."""
    if metadata["format_version"] == 1:  # 1 -> 2 added committee files only
        metadata = {**metadata, "format_version": 2}
    return metadata
