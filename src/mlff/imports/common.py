"""What every import shares: provenance of the imported weights, and the Potential around them.

The provenance (where the weights came from, with what code, under which licence) is
stored in the model file's metadata under ``"provenance"``; ``mlff info`` shows it and
it survives loading and saving the model again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlff.models.potential import Potential

PROVENANCE_KEY = "provenance"


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed_version(package: str) -> str | None:
    """Version of an installed distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def declared_licence(package: str) -> str | None:
    """The licence an installed distribution declares (its metadata's first line), or None."""
    try:
        metadata = importlib.metadata.metadata(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    text = metadata.get("License-Expression") or metadata.get("License") or ""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not first:
        classifiers = [c for c in metadata.get_all("Classifier") or []
                       if c.startswith("License ::")]
        first = classifiers[0].rsplit("::", 1)[-1].strip() if classifiers else ""
    return first or None


def provenance(source: str | Path, code: str, code_version: str | None, licence: str,
               **extra: Any) -> dict[str, Any]:
    """The provenance record of imported weights.

    Args:
        source: the file the weights were read from.
        code: the package whose model the weights belong to (e.g. ``"sevenn"``).
        code_version: its version (installed, or recorded in the file).
        licence: the licence of the weights, as far as it is known.
        extra: further plain-JSON facts (model name, fidelity, file format version).
    """
    path = Path(source)
    return {
        "source": str(path.resolve()),
        "sha256": sha256_of(path),
        "original_code": code,
        "original_code_version": code_version,
        "weights_licence": licence,
        **extra,
    }


def imported_potential(model: nn.Module, hyperparameters: dict[str, Any], species: list[int],
                       record: dict[str, Any], dtype: torch.dtype) -> Potential:
    """A Potential around an architecture that already outputs per-atom energies in eV.

    E0s are zero, scale 1 and shift 0 (the architecture carries the original model's
    own per-species scale and shift); ``record`` becomes the model's provenance.
    """
    potential = Potential(model, hyperparameters, species, [0.0] * len(species), 1.0, 0.0)
    potential.metadata[PROVENANCE_KEY] = record
    return potential.to(dtype).eval()
