"""Import models trained by other codes as ordinary mlff models.

``import_model(source)`` reads a foreign model, rebuilds it as one of mlff's own
architectures with the same weights, and returns the Potential or writes a ``.mlff``
file. Sources:

- ``sevennet-0``, ``sevennet-0-22may2024``, ``sevennet-mf-0``, ``sevennet-l3i5``: the
  SevenNet models shipped inside the installed ``sevenn`` package (no download);
- a SevenNet checkpoint (``*.pth`` written by sevenn);
- a mace-torch model (``*.model``) or state dict (``*.pt``).

No code from a foreign file runs: files are read as tensors and plain data only.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mlff.errors import ModelFileError
from mlff.models.potential import Potential
from mlff.models.precision import Precision, torch_dtype

_MACE_SUFFIXES = (".model", ".pt")


def load_source(source: str | Path, head: str | None = None) -> tuple[Potential, dict[str, Any]]:
    """The Potential (float64) of ``source`` and its provenance record (see module doc).

    Raises:
        ModelFileError: unknown name, missing or unreadable file, unsupported model.
    """
    from mlff.imports import sevennet

    text = str(source)
    if text.lower() in sevennet.PRETRAINED or text.lower() in sevennet._ALIASES:
        name = sevennet._ALIASES.get(text.lower(), text.lower())
        return sevennet.load_sevennet(sevennet.pretrained_path(name), head=head, name=name)
    path = Path(source)
    if not path.exists():
        raise ModelFileError(
            f"{source}: neither a file nor a known model name; known names: "
            f"{', '.join(sorted(sevennet.PRETRAINED))}."
        )
    if path.suffix.lower() in _MACE_SUFFIXES:
        try:
            mace = importlib.import_module("mlff.imports.mace")
        except ModuleNotFoundError as exc:
            if exc.name != "mlff.imports.mace":
                raise
            raise ModelFileError(
                f"{path}: importing mace-torch models is not available in this version of mlff."
            ) from None
        return mace.load_mace(path, head)
    if path.suffix.lower() == ".pth":
        return sevennet.load_sevennet(path, head=head)
    raise ModelFileError(
        f"{path}: unknown kind of model file (expected a SevenNet checkpoint .pth, or a "
        "mace-torch .model / .pt file)."
    )


def import_model(source: str | Path, out: str | Path | None = None, head: str | None = None,
                 dtype: Precision = "float64") -> Path | Potential:
    """Import a foreign model (see module doc).

    Args:
        source: a model name or a model file.
        out: where to write the ``.mlff`` file; None: return the Potential instead.
        head: the head / fidelity of a multi-head model.
        dtype: ``"float64"`` or ``"float32"``, the dtype the model is stored and runs in.

    Returns:
        The written path when ``out`` is given, else the Potential (eval mode, CPU).
    """
    target = torch_dtype(dtype)
    potential, _ = load_source(source, head)
    potential = potential.to(target)
    if out is None:
        return potential
    from mlff.models.io import save_model

    return save_model(potential, out)


__all__ = ["import_model", "load_source"]
