"""The ``*.mlff`` model file: a zip of ``metadata.json`` and ``weights.safetensors``.

Opening a model file executes no code: the metadata is JSON, the weights are plain
tensors, and the module is rebuilt from the architecture registry. ``format_version``
is raised whenever the layout changes; older files are upgraded one version at a time.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols
from pydantic import ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mlff.errors import ConfigError, ModelFileError
from mlff.models.potential import Potential
from mlff.models.precision import PRECISIONS, dtype_name, torch_dtype
from mlff.models.registry import build_model

# 2: a file may hold a committee (``"committee": K``, weights ``members.{k}.*``, read by
# mlff.uq.io); single-potential files are unchanged from 1
# 3: ``"conventions"``: the library versions and coupling convention the weights assume
# (Architecture.conventions; {} for plain torch layers and for files of older formats)
FORMAT_VERSION = 3
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "weights.safetensors"
# metadata.json of a real model is kilobytes; a larger entry is damaged or hostile
_MAX_METADATA_BYTES = 64 * 2**20
# provenance a loaded model keeps, so that saving it again (export, committee) keeps it
# "dispersion": the D3 settings of a model trained on labels minus D3 (mlff.data.dispersion)
KEPT_METADATA = ("data_fingerprint", "test_metrics", "training", "provenance", "dispersion",
                 "active_learning")


def conventions(model: torch.nn.Module) -> dict[str, str]:
    """What the weights of ``model`` assume (:meth:`~mlff.models.contract.Architecture.conventions`)."""
    describe = getattr(type(model), "conventions", None)
    return dict(describe()) if describe is not None else {}


def check_conventions(metadata: dict[str, Any], model: torch.nn.Module, path: Path) -> None:
    """Refuse weights made under another coupling convention than ``model`` uses.

    Raises:
        ModelFileError: naming both conventions.
    """
    recorded = metadata.get("conventions") or {}
    current = conventions(model)
    if "coupling" in recorded and recorded["coupling"] != current.get("coupling"):
        raise ModelFileError(
            f"{path}: its weights assume the coupling convention {recorded['coupling']!r}, but "
            f"this mlff builds {metadata['hyperparameters'].get('architecture')} with "
            f"{current.get('coupling', 'none')!r}; use the mlff version that wrote it."
        )


def model_metadata(potential: Potential) -> dict[str, Any]:
    """Everything needed to rebuild ``potential``, plus its provenance, as plain JSON data."""
    from mlff._version import __version__

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
        "conventions": conventions(potential.model),
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


def add_metadata(path: str | Path, key: str, value: Any) -> Path:
    """Set ``metadata[key] = value`` (plain JSON data) in the model file ``path``, in place
    and atomically; the weights are copied unchanged."""
    path = Path(path)
    metadata, data = read_archive(path, weights=True)
    metadata[key] = value
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(metadata, indent=2))
        archive.writestr(WEIGHTS_NAME, data)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a model file, without building the model."""
    metadata, _ = read_archive(Path(path), weights=False)
    return metadata


def potential_from_archive(metadata: dict[str, Any], weights: bytes, path: Path) -> Potential:
    """The Potential a single-model archive (:func:`read_archive`) holds, in its saved dtype.

    Files are loaded with :func:`mlff.uq.io.load_model`, which also reads committees; this
    is its single-model part.

    Raises:
        ModelFileError: the weights do not fit the metadata, or either is damaged.
    """
    shapes = weight_shapes(weights, path)
    check_sizes(metadata["hyperparameters"], shapes, path)
    potential = potential_from_metadata(metadata, path)
    load_weights(potential, weights, shapes, path)
    return potential


def weight_shapes(data: bytes, path: Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in ``weights.safetensors``, read from its header
    alone (nothing is allocated).

    Raises:
        ModelFileError: the header is truncated or not a safetensors header.
    """
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < size <= len(data) - 8:
        raise ModelFileError(f"{path}: {WEIGHTS_NAME} is truncated or not a safetensors file. "
                             "The model file is damaged; use the original.")
    try:
        header = json.loads(data[8:8 + size])
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: {WEIGHTS_NAME} has a corrupt header. The model file is "
                             "damaged; use the original.")
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(shape, list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ModelFileError(f"{path}: {WEIGHTS_NAME}: tensor {name!r} has no valid shape. "
                                 "The model file is damaged; use the original.")
        shapes[name] = tuple(shape)
    return shapes


def _integers(value: Any, where: str) -> list[tuple[str, int]]:
    """Every integer in a nested JSON value, with its dotted location."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [(where, value)]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _integers(v, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _integers(v, f"{where}.{k}")]
    return []


def check_sizes(hyperparameters: dict[str, Any], shapes: dict[str, tuple[int, ...]],
                path: Path) -> None:
    """Refuse metadata whose sizes no tensor in the file has, before building the model.

    Every size knob of an architecture (features, channels, layer widths) is the length of
    some weight tensor's axis, and counts (layers, angular orders) are far below the
    number of tensors; an integer above both was not written by mlff, and building the
    model it describes could take all memory.

    Raises:
        ModelFileError: naming the hyperparameter and the largest size in the weights.
    """
    largest = max([d for shape in shapes.values() for d in shape] + [len(shapes)], default=0)
    for where, value in _integers(hyperparameters, "hyperparameters"):
        if value > largest:
            raise ModelFileError(
                f"{path}: metadata.json sets {where} = {value}, larger than any tensor in "
                f"{WEIGHTS_NAME} (largest size {largest}): the metadata does not belong to "
                "these weights (the file was altered or damaged). Use the original model file."
            )


def load_weights(module: torch.nn.Module, data: bytes, shapes: dict[str, tuple[int, ...]],
                 path: Path) -> None:
    """Load ``weights.safetensors`` into ``module`` after checking every name and shape.

    Raises:
        ModelFileError: a tensor is missing, extra or of another shape than the metadata
            describes (the first one is named), or the tensor data is damaged.
    """
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    problems = [f"{name!r} has shape {list(shapes[name])}, the metadata says {list(shape)}"
                for name, shape in expected.items() if name in shapes and shapes[name] != shape]
    problems += [f"{name!r} is missing" for name in expected if name not in shapes]
    problems += [f"{name!r} is not part of the model" for name in shapes if name not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelFileError(
            f"{path}: the weights do not match the metadata: tensor {problems[0]}{more}. "
            "The file was altered or damaged; use the original model file."
        )
    try:
        module.load_state_dict(load_safetensors(data), strict=True)
    except Exception as exc:  # safetensors reports damaged data with its own error type
        raise ModelFileError(f"{path}: {WEIGHTS_NAME} is damaged ({exc}). Use the original "
                             "model file.") from None


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
        saved_dtype = torch_dtype(metadata["dtype"])
    except (KeyError, ValidationError, ValueError, TypeError, IndexError, ConfigError) as exc:
        raise ModelFileError(f"{path}: the metadata does not describe a valid model ({exc}).") from None
    except (RuntimeError, MemoryError) as exc:  # e.g. sizes too large to allocate
        raise ModelFileError(f"{path}: the model the metadata describes cannot be built "
                             f"({type(exc).__name__}: {str(exc)[:200]}).") from None
    check_conventions(metadata, model, path)
    potential.to(dtype=saved_dtype)
    potential.metadata = {
        k: v for k, v in metadata.items() if k in KEPT_METADATA
    }
    return potential


def _check_entries(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse archives whose entry names are paths out of a folder, or given twice."""
    names = archive.namelist()
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise ModelFileError(
                f"{path}: the archive holds an entry named {name!r}, an absolute or '..' path. "
                f"mlff writes only {METADATA_NAME} and {WEIGHTS_NAME}; this file was altered or "
                "is not from mlff. Do not use it."
            )
    for name in (METADATA_NAME, WEIGHTS_NAME):
        if names.count(name) > 1:
            raise ModelFileError(f"{path}: the archive holds {name} {names.count(name)} times; "
                                 "this file was altered. Use the original model file.")
    if METADATA_NAME not in names or WEIGHTS_NAME not in names:
        missing = " and ".join(n for n in (METADATA_NAME, WEIGHTS_NAME) if n not in names)
        raise ModelFileError(
            f"{path}: not an mlff model file (it lacks {missing}). Model files are written by "
            "`mlff train`; use the original file."
        )
    if archive.getinfo(METADATA_NAME).file_size > _MAX_METADATA_BYTES:
        raise ModelFileError(f"{path}: {METADATA_NAME} is "
                             f"{archive.getinfo(METADATA_NAME).file_size} bytes, too large for "
                             "a model's metadata; this file was altered or is damaged.")


def read_archive(path: Path, weights: bool) -> tuple[dict[str, Any], bytes]:
    """The checked, upgraded metadata of a model file and (when ``weights``) the raw bytes
    of its ``weights.safetensors`` (else ``b""``).

    Raises:
        ModelFileError: the file is missing, not a zip, damaged, has unsafe or missing
            entries, invalid metadata, or a format newer than this mlff reads.
    """
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file.")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a .mlff model file.")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_entries(archive, path)
            metadata = json.loads(archive.read(METADATA_NAME))
            data = archive.read(WEIGHTS_NAME) if weights else b""
    except zipfile.BadZipFile as exc:
        raise ModelFileError(
            f"{path}: not an mlff model file (not a zip archive, or a truncated or damaged "
            f"one: {exc}). Model files end in .mlff and are written by `mlff train`."
        ) from None
    except (EOFError, zlib.error, NotImplementedError, OSError) as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({type(exc).__name__}: "
                             f"{exc}); it may be damaged or truncated. Use the original "
                             "file.") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise ModelFileError(f"{path}: corrupt metadata.json ({exc}).") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: metadata.json holds a {type(metadata).__name__}, not "
                             "an object; the file was altered or is damaged.")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: metadata.json has no format_version.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in model-file format {version} by mlff "
            f"{metadata.get('mlff_version', '?')}; this mlff reads up to format {FORMAT_VERSION}. "
            "Upgrade mlff (pip install -U mlff)."
        )
    metadata = _upgrade(metadata)
    check_metadata(metadata, path)
    return metadata, data


def check_metadata(metadata: dict[str, Any], path: Path, where: str = "metadata.json") -> None:
    """Check the fields every model (and each committee member) has, and their types.

    Raises:
        ModelFileError: naming the field and what is wrong with it.
    """
    def fail(message: str) -> None:
        raise ModelFileError(f"{path}: {where}: {message}; the file was altered or is damaged. "
                             "Use the original model file.")

    for key, kind in (("architecture", str), ("hyperparameters", dict), ("species", list),
                      ("e0s", dict), ("dtype", str)):
        if not isinstance(metadata.get(key), kind):
            fail(f"'{key}' is missing or not a {kind.__name__}")
    species = metadata["species"]
    if not species or not all(isinstance(z, int) and not isinstance(z, bool)
                              and 0 < z < len(chemical_symbols) for z in species):
        fail(f"'species' = {str(species)[:80]} is not a list of atomic numbers (1-118)")
    if len(set(species)) != len(species):
        fail(f"'species' = {species} lists an element twice")
    symbols = [chemical_symbols[z] for z in species]
    if metadata.get("species_symbols", symbols) != symbols:
        fail(f"'species_symbols' {metadata['species_symbols']} do not match the species {symbols}")
    missing = [s for s in symbols if s not in metadata["e0s"]]
    if missing:
        fail(f"'e0s' has no value for {', '.join(missing)}")
    numbers = [("cutoff", metadata.get("cutoff")), ("scale", metadata.get("scale")),
               ("shift", metadata.get("shift"))]
    numbers += [(f"e0s.{s}", metadata["e0s"][s]) for s in symbols]
    for key, value in numbers:
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value)):
            fail(f"'{key}' = {value!r} is not a finite number")
    if metadata["dtype"] not in PRECISIONS:
        fail(f"'dtype' = {metadata['dtype']!r} is not one of {', '.join(PRECISIONS)}")
    if "committee" in metadata:
        members = metadata.get("members")
        size = metadata["committee"]
        if not (isinstance(members, list) and isinstance(size, int) and size == len(members) > 0):
            fail(f"'committee' = {size!r} does not match the {'members' if isinstance(members, list) else 'missing members'}")
        for k, member in enumerate(members):
            if not isinstance(member, dict):
                fail(f"members[{k}] is not an object")
            check_metadata(member, path, f"{where} members[{k}]")


def _upgrade(metadata: dict[str, Any]) -> dict[str, Any]:
    """Bring older metadata to the current format, one version at a time."""
    if metadata["format_version"] == 1:  # 1 -> 2 added committee files only
        metadata = {**metadata, "format_version": 2}
    if metadata["format_version"] == 2:  # 2 -> 3 added the conventions, unrecorded before
        metadata = {**metadata, "format_version": 3, "conventions": {}}
        if "members" in metadata and isinstance(metadata["members"], list):
            metadata["members"] = [{**m, "conventions": {}} if isinstance(m, dict) else m
                                   for m in metadata["members"]]
    return metadata
