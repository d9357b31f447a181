"""Read a pickled PyTorch module (a mace-torch ``.model`` file) without running its code.

``torch.save(model)`` writes a zip whose ``data.pkl`` pickles the module object: class
references (GLOBAL opcodes) that an ordinary unpickler would import and call, and the
tensors as references to raw storages in the zip. :func:`read_pickled_module` unpickles
it with every class and function replaced by an inert :class:`Stub` that only records
its name, its constructor arguments and its state; the only callables that run are a
short allow-list that rebuilds tensors from the raw bytes (no torch code from the file,
no import of mace or e3nn). The result is a tree of stubs whose ``state`` dicts hold
the modules' ``_parameters``, ``_buffers``, ``_modules`` and plain attributes.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mlff.errors import ModelFileError

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_DTYPES = {str(d).removeprefix("torch."): d for d in _STORAGE_DTYPES.values()}


class Stub:
    """An inert stand-in for a class or function named in a pickle.

    ``qualname`` is ``module.name`` of the original; instances record ``args`` (of the
    constructor or call), ``state`` (what ``__setstate__`` received) and ``items``
    (list or dict entries appended to it).
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Stub:
        return _stub_class(self.qualname + "()")(*args, **kwargs)

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def __repr__(self) -> str:
        return f"<{self.qualname}>"

    @property
    def name(self) -> str:
        """The class name without its module."""
        return self.qualname.rsplit(".", 1)[-1]

    def attribute(self, key: str, default: Any = None) -> Any:
        """An entry of the recorded state dict (a module's attribute), or ``default``."""
        state = self.state[0] if isinstance(self.state, tuple) and self.state else self.state
        if isinstance(state, dict):
            return state.get(key, default)
        return default


def _stub_class(qualname: str) -> type[Stub]:
    return type(qualname.rsplit(".", 1)[-1], (Stub,), {"qualname": qualname})


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple,
                    *_: Any) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _rebuild_from_type(func: Any, _type: Any, args: tuple, _state: Any) -> Any:
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise pickle.UnpicklingError("a tensor subclass rebuilt by an unexpected function")
    return func(*args)


def _reconstructor(cls: Any, _base: Any, _state: Any) -> Any:
    if not (isinstance(cls, type) and issubclass(cls, Stub)):
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r}")
    return cls.__new__(cls)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice, ("builtins", "complex"): complex,
    ("builtins", "object"): object,
    ("torch", "Size"): tuple,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        return _stub_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        dtype = getattr(storage_type, "dtype", None)
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage of unknown type {storage_type!r}")
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if flat.numel() != numel:
                raise pickle.UnpicklingError(f"storage {key}: {flat.numel()} values, expected {numel}")
            self.storages[key] = flat
        return self.storages[key]


def read_pickled_module(path: Path) -> Stub:
    """The root object of a ``torch.save``'d module, as a tree of :class:`Stub`.

    Raises:
        ModelFileError: not a torch zip archive, or a pickle this reader cannot follow.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ModelFileError(f"{path}: not a torch.save archive (no single data.pkl).")
            if any(n.endswith("/constants.pkl") for n in archive.namelist()):
                raise ModelFileError(
                    f"{path}: a TorchScript (compiled) model. Import the .model file it was "
                    "made from, or a state-dict export (see the foundation models guide).")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder = f"{prefix}byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
                raise ModelFileError(f"{path}: big-endian tensors are not supported.")
            root = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix).load()
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{path}: not a torch zip archive (an old-format torch.save file?). Re-save it "
            "with a recent torch, or export a state dict (see the foundation models guide).") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ModelFileError(f"{path}: cannot read the pickled model ({exc}).") from None
    return root


def module_state_dict(module: Stub, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a stubbed ``torch.nn.Module``: persistent parameters and buffers."""
    out: dict[str, torch.Tensor] = {}
    parameters = module.attribute("_parameters") or {}
    buffers = module.attribute("_buffers") or {}
    transient = module.attribute("_non_persistent_buffers_set") or set()
    for name, value in parameters.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
    for name, value in buffers.items():
        if isinstance(value, torch.Tensor) and name not in transient:
            out[prefix + name] = value
    for name, child in (module.attribute("_modules") or {}).items():
        if isinstance(child, Stub):
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def submodule(module: Stub, dotted: str) -> Stub | None:
    """The stubbed submodule at ``a.b.0`` (``_modules`` entries), or None."""
    current: Any = module
    for part in dotted.split("."):
        if not isinstance(current, Stub):
            return None
        current = (current.attribute("_modules") or {}).get(part)
    return current if isinstance(current, Stub) else None
