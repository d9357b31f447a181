"""Packed data sets: graph dicts of many structures in one HDF5 file, for sets larger than memory.

:func:`pack` streams structure files (one frame in memory at a time), computes every
neighbour list once and appends the results, ``chunk_size`` structures at a time, to one
HDF5 file. :class:`PackedDataset` reads it back lazily, one structure or one contiguous
range of structures per read; :class:`ChunkedShuffleLoader` iterates it in shuffled
mini-batches while holding only a window of structures in memory.

File layout (``format_version`` 1). Arrays are concatenated over structures, chunked and
resizable along their first axis:

========================  ==============  ==========================================
dataset                   shape           meaning
========================  ==============  ==========================================
``positions``             (N, 3) float64  Å
``atomic_numbers``        (N,) uint8
``forces``                (N, 3) float64  eV/Å (zeros where ``has_forces`` is False)
``edge_index``            (E, 2) int32    sender, receiver, local to the structure
``edge_shift``            (E, 3) int32    integer cell shifts
``cell``                  (B, 3, 3)       Å, rows; zeros for non-periodic structures
``pbc``                   (B, 3) bool
``energy``                (B,) float64    eV (0 where ``has_energy`` is False)
``stress``                (B, 3, 3)       eV/Å³, ASE sign
``weight``                (B,) float64    loss weight
``config_type``           (B,) int32      index into the ``config_types`` attribute
``has_energy`` etc.       (B,) bool       label flags
``num_atoms``             (B,) int64
``num_edges``             (B,) int64
``atom_offset``           (B,) int64      first row of the structure in the per-atom arrays
``edge_offset``           (B,) int64      first row in the per-edge arrays
========================  ==============  ==========================================

Attributes: ``format`` (``"mlff-packed"``), ``format_version``, ``mlff_version``,
``cutoff`` (Å), ``label_keys`` and ``require`` (JSON), ``config_types`` (JSON list of
names, sorted; tags as in :class:`~mlff.data.dataset.GraphDataset`), ``sources`` (JSON
list of ``{"path", "sha256", "frames"}``, one per input file in packing order),
``element_counts`` (JSON ``{Z: atoms}``), ``fingerprint`` (the SHA-256 of the one input
file, else the SHA-256 of the input files' digests joined by newlines), ``num_structures``,
``num_atoms``, ``num_edges``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from mlff.data import keys as K
from mlff.data.dataset import (
    GraphDataset,
    _progress,
    batch_is_full,
    file_fingerprint,
    group_batches,
)
from mlff.data.graph import Graph, collate, structure_to_graph
from mlff.data.readers import LabelKeys, check_file, iter_structures
from mlff.errors import ConfigError, DataError

FORMAT = "mlff-packed"
FORMAT_VERSION = 1
PACKED_SUFFIXES = (".h5", ".hdf5")

# name: (stored dtype, shape after the first axis, HDF5 chunk rows)
_PER_ATOM = {
    K.POSITIONS: (np.float64, (3,)),
    K.ATOMIC_NUMBERS: (np.uint8, ()),
    K.FORCES: (np.float64, (3,)),
}
_PER_EDGE = {
    K.EDGE_INDEX: (np.int32, (2,)),
    K.EDGE_SHIFT: (np.int32, (3,)),
}
_PER_STRUCTURE = {
    K.CELL: (np.float64, (3, 3)),
    K.PBC: (np.bool_, (3,)),
    K.ENERGY: (np.float64, ()),
    K.STRESS: (np.float64, (3, 3)),
    K.WEIGHT: (np.float64, ()),
    K.CONFIG_TYPE: (np.int32, ()),
    K.HAS_ENERGY: (np.bool_, ()),
    K.HAS_FORCES: (np.bool_, ()),
    K.HAS_STRESS: (np.bool_, ()),
    K.NUM_ATOMS: (np.int64, ()),
    "num_edges": (np.int64, ()),
    "atom_offset": (np.int64, ()),
    "edge_offset": (np.int64, ()),
}
_CHUNK_ROWS = {"atom": 4096, "edge": 16384, "structure": 1024}
# graph keys stored per structure, with the dtype of the graph dict
_STRUCTURE_GRAPH_KEYS = {
    K.CELL: np.float64, K.PBC: np.bool_, K.ENERGY: np.float64, K.STRESS: np.float64,
    K.WEIGHT: np.float64, K.CONFIG_TYPE: np.int64, K.HAS_ENERGY: np.bool_,
    K.HAS_FORCES: np.bool_, K.HAS_STRESS: np.bool_,
}
# reading a set of structures: indices closer than this are read in one contiguous
# range (the structures in between are read and dropped), up to _MAX_SPAN structures
_MAX_GAP = 32
_MAX_SPAN = 4096
# __getitem__ reads aligned blocks of this many structures and keeps the last few
_CACHE_BLOCK = 64
_CACHE_BLOCKS = 16


def _h5py():
    import h5py

    return h5py


def is_packed(path: str | Path) -> bool:
    """Whether ``path`` names a packed data set (by its suffix: ``.h5`` or ``.hdf5``)."""
    return Path(path).suffix.lower() in PACKED_SUFFIXES


# --- writing -----------------------------------------------------------------------------
class _Writer:
    """Appends graph dicts to the resizable datasets of an open HDF5 file, in chunks."""

    def __init__(self, handle, chunk_size: int) -> None:
        self.handle = handle
        self.chunk_size = chunk_size
        self.layout = {}
        groups = (("atom", _PER_ATOM), ("edge", _PER_EDGE), ("structure", _PER_STRUCTURE))
        for group, table in groups:
            for name, (dtype, tail) in table.items():
                handle.create_dataset(
                    name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                    chunks=(_CHUNK_ROWS[group], *tail),
                )
                self.layout[name] = dtype
        self.buffer: dict[str, list[np.ndarray]] = {name: [] for name in self.layout}
        self.buffered = 0
        self.num_structures = 0
        self.num_atoms = 0
        self.num_edges = 0
        self.element_counts = np.zeros(256, dtype=np.int64)

    def add(self, graph: Graph) -> None:
        n = int(graph[K.NUM_ATOMS][0])
        e = int(graph[K.EDGE_INDEX].shape[1])
        numbers = graph[K.ATOMIC_NUMBERS].numpy()
        self.element_counts += np.bincount(numbers, minlength=256)
        buffer = self.buffer
        buffer[K.POSITIONS].append(graph[K.POSITIONS].numpy())
        buffer[K.ATOMIC_NUMBERS].append(numbers)
        buffer[K.FORCES].append(graph[K.FORCES].numpy())
        buffer[K.EDGE_INDEX].append(graph[K.EDGE_INDEX].numpy().T)
        buffer[K.EDGE_SHIFT].append(np.rint(graph[K.EDGE_SHIFT].numpy()))
        for key in _STRUCTURE_GRAPH_KEYS:
            buffer[key].append(graph[key].numpy())
        buffer[K.NUM_ATOMS].append(np.array([n]))
        buffer["num_edges"].append(np.array([e]))
        buffer["atom_offset"].append(np.array([self.num_atoms]))
        buffer["edge_offset"].append(np.array([self.num_edges]))
        self.num_structures += 1
        self.num_atoms += n
        self.num_edges += e
        self.buffered += 1
        if self.buffered >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        for name, parts in self.buffer.items():
            values = np.concatenate(parts).astype(self.layout[name], copy=False)
            dataset = self.handle[name]
            start = dataset.shape[0]
            dataset.resize(start + len(values), axis=0)
            dataset[start:] = values
            parts.clear()
        self.buffered = 0


def pack(
    inputs: Sequence[str | Path],
    out: str | Path,
    cutoff: float,
    keys: LabelKeys = LabelKeys(),
    require: Sequence[str] = (),
    chunk_size: int = 1024,
    progress: bool = False,
) -> Path:
    """Read structure files and write their graph dicts to one packed HDF5 file.

    The inputs are streamed (``ase.io.iread``: one frame in memory at a time) and the
    output is written ``chunk_size`` structures at a time, so neither needs to fit in
    memory. The file is written under a temporary name and renamed when complete.

    Args:
        inputs: files ASE can read, packed in this order.
        out: the packed file (``.h5`` or ``.hdf5``); replaced if it exists.
        cutoff: neighbour-list radius, Å; training needs ``model.cutoff`` equal to it.
        keys: where the labels are stored in the inputs.
        require: labels every frame must have (``"energy"``, ``"forces"``, ``"stress"``).
        chunk_size: structures buffered in memory between writes.
        progress: show a progress bar.

    Returns:
        The path of the packed file.

    Raises:
        DataError: an input is missing, unreadable, or holds bad or missing labels (the
            message names the file and the frame).
        ConfigError: bad arguments (no inputs, cutoff <= 0, an output that is not .h5).
    """
    h5py = _h5py()
    if not inputs:
        raise ConfigError("pack: give at least one structure file to pack.")
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise ConfigError(f"pack: the cutoff must be a positive number of Å, got {cutoff}.")
    if chunk_size < 1:
        raise ConfigError(f"pack: chunk_size must be at least 1, got {chunk_size}.")
    out = Path(out)
    if not is_packed(out):
        raise ConfigError(f"{out}: a packed data set must end in .h5 or .hdf5.")
    paths = [check_file(path) for path in inputs]
    for path in paths:
        if path.resolve() == out.resolve():
            raise ConfigError(f"{out}: the output is also an input; choose another --out.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tags: dict[str, int] = {}
    sources = []
    try:
        with h5py.File(tmp, "w") as handle, _progress(progress) as bar:
            task = bar.add_task("packing", total=None)
            writer = _Writer(handle, chunk_size)
            for path in paths:
                frames = 0
                for structure in iter_structures(path, keys, require=require):
                    tag = tags.setdefault(structure.config_type, len(tags))
                    writer.add(structure_to_graph(structure, cutoff, tag))
                    frames += 1
                    bar.advance(task)
                sources.append(
                    {"path": str(path), "sha256": file_fingerprint(path), "frames": frames}
                )
            writer.flush()
            # tags in sorted order of the names, as GraphDataset numbers them
            names = sorted(tags)
            remap = np.zeros(len(tags), dtype=np.int32)
            for name, tag in tags.items():
                remap[tag] = names.index(name)
            config_type = handle[K.CONFIG_TYPE]
            for start in range(0, writer.num_structures, 1 << 20):
                stop = min(start + (1 << 20), writer.num_structures)
                config_type[start:stop] = remap[config_type[start:stop]]
            digests = [source["sha256"] for source in sources]
            fingerprint = (
                digests[0] if len(digests) == 1
                else hashlib.sha256("\n".join(digests).encode()).hexdigest()
            )
            from mlff._version import __version__

            attrs = handle.attrs
            attrs["format"] = FORMAT
            attrs["format_version"] = FORMAT_VERSION
            attrs["mlff_version"] = __version__
            attrs["cutoff"] = float(cutoff)
            attrs["label_keys"] = json.dumps(asdict(keys))
            attrs["require"] = json.dumps(sorted(require))
            attrs["config_types"] = json.dumps(names)
            attrs["sources"] = json.dumps(sources)
            attrs["element_counts"] = json.dumps(
                {str(z): int(c) for z, c in enumerate(writer.element_counts) if c}
            )
            attrs["fingerprint"] = fingerprint
            attrs["num_structures"] = writer.num_structures
            attrs["num_atoms"] = writer.num_atoms
            attrs["num_edges"] = writer.num_edges
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


# --- reading -----------------------------------------------------------------------------
def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each start s and length l (vectorised)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


class _Block:
    """Some structures of a packed file as numpy arrays (per-structure, per-atom, per-edge)."""

    def __init__(self, structure: dict[str, np.ndarray], atoms: dict[str, np.ndarray],
                 edges: dict[str, np.ndarray]) -> None:
        self.structure = structure
        self.atoms = atoms
        self.edges = edges
        self.num_atoms = structure[K.NUM_ATOMS]
        self.num_edges = structure["num_edges"]
        self.atom_start = np.cumsum(self.num_atoms) - self.num_atoms
        self.edge_start = np.cumsum(self.num_edges) - self.num_edges

    def __len__(self) -> int:
        return len(self.num_atoms)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, bytes."""
        parts = (self.structure, self.atoms, self.edges)
        return sum(array.nbytes for part in parts for array in part.values())

    def take(self, local: np.ndarray) -> _Block:
        """A block of the structures at ``local`` (in that order)."""
        atom_rows = _ranges(self.atom_start[local], self.num_atoms[local])
        edge_rows = _ranges(self.edge_start[local], self.num_edges[local])
        return _Block(
            {k: v[local] for k, v in self.structure.items()},
            {k: v[atom_rows] for k, v in self.atoms.items()},
            {k: v[edge_rows] for k, v in self.edges.items()},
        )

    @staticmethod
    def concatenate(blocks: list[_Block]) -> _Block:
        if len(blocks) == 1:
            return blocks[0]
        return _Block(
            *({k: np.concatenate([getattr(b, part)[k] for b in blocks])
               for k in getattr(blocks[0], part)}
              for part in ("structure", "atoms", "edges"))
        )

    def collate(self, local: np.ndarray) -> Graph:
        """The graph dict of the structures at ``local``, equal to collating their graphs."""
        local = np.asarray(local, dtype=np.int64)
        num_atoms = self.num_atoms[local]
        num_edges = self.num_edges[local]
        atom_rows = _ranges(self.atom_start[local], num_atoms)
        edge_rows = _ranges(self.edge_start[local], num_edges)
        first_atom = np.cumsum(num_atoms) - num_atoms
        edge_index = self.edges[K.EDGE_INDEX][edge_rows].astype(np.int64).T
        edge_index = np.ascontiguousarray(edge_index + np.repeat(first_atom, num_edges))
        graph: Graph = {
            K.POSITIONS: torch.from_numpy(self.atoms[K.POSITIONS][atom_rows]),
            K.ATOMIC_NUMBERS: torch.from_numpy(
                self.atoms[K.ATOMIC_NUMBERS][atom_rows].astype(np.int64)
            ),
            K.EDGE_INDEX: torch.from_numpy(edge_index),
            K.EDGE_SHIFT: torch.from_numpy(self.edges[K.EDGE_SHIFT][edge_rows].astype(np.float64)),
            K.BATCH: torch.from_numpy(np.repeat(np.arange(len(local), dtype=np.int64), num_atoms)),
            K.NUM_ATOMS: torch.from_numpy(num_atoms.astype(np.int64)),
            K.FORCES: torch.from_numpy(self.atoms[K.FORCES][atom_rows]),
        }
        for key, dtype in _STRUCTURE_GRAPH_KEYS.items():
            graph[key] = torch.from_numpy(self.structure[key][local].astype(dtype, copy=False))
        return graph


class _Store:
    """A packed file: metadata, per-structure sizes and offsets, and a per-process handle.

    Shared by a :class:`PackedDataset` and its subsets. The HDF5 handle is opened on first
    access in each process (so a dataset survives ``fork`` into DataLoader workers) and is
    not pickled.
    """

    def __init__(self, path: str | Path) -> None:
        h5py = _h5py()
        self.path = check_file(path)
        try:
            with h5py.File(self.path, "r") as handle:
                attrs = dict(handle.attrs)
                if attrs.get("format") != FORMAT:
                    raise DataError(
                        f"{self.path}: an HDF5 file, but not an mlff packed data set. Make one "
                        "with `mlff data pack`."
                    )
                version = int(attrs["format_version"])
                if version > FORMAT_VERSION:
                    raise DataError(
                        f"{self.path}: packed format version {version} is newer than this mlff "
                        f"reads ({FORMAT_VERSION}); upgrade mlff or repack the data."
                    )
                self.num_atoms_array = handle[K.NUM_ATOMS][:].astype(np.int64)
                self.num_edges_array = handle["num_edges"][:].astype(np.int64)
                self.atom_offset = handle["atom_offset"][:].astype(np.int64)
                self.edge_offset = handle["edge_offset"][:].astype(np.int64)
                rows = {name: handle[name].shape for name in (*_PER_STRUCTURE, *_PER_ATOM, *_PER_EDGE)}
            self.cutoff = float(attrs["cutoff"])
            self.config_types: list[str] = json.loads(attrs["config_types"])
            self.files: list[dict] = json.loads(attrs["sources"])
            self.label_keys = LabelKeys(**json.loads(attrs["label_keys"]))
            self.require: list[str] = json.loads(attrs["require"])
            counts = json.loads(attrs["element_counts"])
            self.element_counts = {int(z): int(c) for z, c in counts.items()}
            self.fingerprint = str(attrs["fingerprint"])
            self._frame_starts = np.cumsum([0] + [int(f["frames"]) for f in self.files])
        except DataError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise DataError(
                f"{self.path}: cannot read it as a packed data set ({type(exc).__name__}: {exc}). "
                "The file may be truncated or not HDF5; repack it with `mlff data pack`."
            ) from None
        self._check_layout(rows)
        self.format_version = version
        self.num_structures = len(self.num_atoms_array)
        self._handle = None
        self._pid = None
        self._cache: OrderedDict[int, _Block] = OrderedDict()

    def _check_layout(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Every array as long as the sizes and offsets say (a damaged or edited file is not)."""
        structures = len(self.num_atoms_array)
        atoms, edges = int(self.num_atoms_array.sum()), int(self.num_edges_array.sum())
        expected = {**{k: (structures, *v[1]) for k, v in _PER_STRUCTURE.items()},
                    **{k: (atoms, *v[1]) for k, v in _PER_ATOM.items()},
                    **{k: (edges, *v[1]) for k, v in _PER_EDGE.items()}}
        problems = [f"'{name}' has shape {tuple(shapes[name])}, expected {shape}"
                    for name, shape in expected.items() if tuple(shapes[name]) != shape]
        starts = np.cumsum(self.num_atoms_array) - self.num_atoms_array
        if not np.array_equal(self.atom_offset, starts):
            problems.append("'atom_offset' does not follow from 'num_atoms'")
        starts = np.cumsum(self.num_edges_array) - self.num_edges_array
        if not np.array_equal(self.edge_offset, starts):
            problems.append("'edge_offset' does not follow from 'num_edges'")
        if (self.num_atoms_array < 1).any() or (self.num_edges_array < 0).any():
            problems.append("a structure has no atoms or a negative number of edges")
        if int(self._frame_starts[-1]) != structures:
            problems.append(f"the sources list {int(self._frame_starts[-1])} frames for "
                            f"{structures} structures")
        if problems:
            raise DataError(f"{self.path}: the packed arrays are inconsistent: {problems[0]}. "
                            "The file is damaged or was edited; repack it with `mlff data pack`.")

    def _check_block(self, block: _Block, lo: int) -> None:
        """Refuse values packing never writes: NaN/inf, invalid elements, edges out of range."""
        def fail(index: int, what: str) -> None:
            raise DataError(f"{self.path}: structure {lo + index} (from {self.source(lo + index)}) "
                            f"{what}. The file is damaged or was edited; repack it with "
                            "`mlff data pack`.")

        structure_of_atom = np.repeat(np.arange(len(block)), block.num_atoms)
        for name, what in ((K.POSITIONS, "position"), (K.FORCES, "force")):
            bad = ~np.isfinite(block.atoms[name]).all(axis=1)
            if bad.any():
                row = int(np.argmax(bad))
                k = int(structure_of_atom[row])
                fail(k, f"has a non-finite {what} (NaN or inf) on atom {row - int(block.atom_start[k])}")
        numbers = block.atoms[K.ATOMIC_NUMBERS]
        bad = (numbers < 1) | (numbers >= len(chemical_symbols))
        if bad.any():
            row = int(np.argmax(bad))
            k = int(structure_of_atom[row])
            fail(k, f"has atomic number {int(numbers[row])} on atom {row - int(block.atom_start[k])}")
        for name in (K.CELL, K.ENERGY, K.STRESS, K.WEIGHT):
            values = block.structure[name].reshape(len(block), -1)
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                fail(int(np.argmax(bad)), f"has a non-finite {name} (NaN or inf)")
        structure_of_edge = np.repeat(np.arange(len(block)), block.num_edges)
        index = block.edges[K.EDGE_INDEX]
        bad = ((index < 0) | (index >= block.num_atoms[structure_of_edge][:, None])).any(axis=1)
        if bad.any():
            fail(int(structure_of_edge[int(np.argmax(bad))]), "has an edge to an atom it does not have")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_pid"], state["_cache"] = None, None, OrderedDict()
        return state

    def handle(self):
        """The HDF5 file, opened read-only once per process."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = _h5py().File(self.path, "r")
            self._pid = os.getpid()
            self._cache = OrderedDict()
        return self._handle

    def source(self, index: int) -> str:
        """``"file:frame"`` of the structure at file index ``index``."""
        k = int(np.searchsorted(self._frame_starts, index, side="right")) - 1
        return f"{self.files[k]['path']}:{index - int(self._frame_starts[k])}"

    def read_range(self, lo: int, hi: int) -> _Block:
        """Structures lo..hi-1 with one contiguous read per array."""
        handle = self.handle()
        a0 = int(self.atom_offset[lo])
        a1 = int(self.atom_offset[hi - 1] + self.num_atoms_array[hi - 1])
        e0 = int(self.edge_offset[lo])
        e1 = int(self.edge_offset[hi - 1] + self.num_edges_array[hi - 1])
        structure = {name: handle[name][lo:hi] for name in _STRUCTURE_GRAPH_KEYS}
        structure[K.NUM_ATOMS] = self.num_atoms_array[lo:hi]
        structure["num_edges"] = self.num_edges_array[lo:hi]
        block = _Block(
            structure,
            {name: handle[name][a0:a1] for name in _PER_ATOM},
            {name: handle[name][e0:e1] for name in _PER_EDGE},
        )
        self._check_block(block, lo)
        return block

    def read(self, indices: np.ndarray) -> tuple[_Block, np.ndarray]:
        """A block holding the structures at file ``indices`` and where each one is in it.

        Nearby indices are read as one contiguous range (the structures in between are
        dropped right away), so a contiguous run costs one read per array.
        """
        indices = np.asarray(indices, dtype=np.int64)
        unique = np.unique(indices)
        runs = []
        lo = prev = int(unique[0])
        for index in unique[1:].tolist():
            if index - prev > _MAX_GAP or index + 1 - lo > _MAX_SPAN:
                runs.append((lo, prev + 1))
                lo = index
            prev = index
        runs.append((lo, prev + 1))
        blocks = []
        for lo, hi in runs:
            block = self.read_range(lo, hi)
            wanted = unique[(unique >= lo) & (unique < hi)] - lo
            blocks.append(block if len(wanted) == hi - lo else block.take(wanted))
        return _Block.concatenate(blocks), np.searchsorted(unique, indices)

    def cached_block(self, index: int) -> tuple[_Block, int]:
        """The aligned block of ``_CACHE_BLOCK`` structures holding ``index`` (LRU cache)."""
        self.handle()  # resets the cache after a fork
        key = index // _CACHE_BLOCK
        block = self._cache.get(key)
        if block is None:
            lo = key * _CACHE_BLOCK
            block = self.read_range(lo, min(lo + _CACHE_BLOCK, self.num_structures))
            self._cache[key] = block
            if len(self._cache) > _CACHE_BLOCKS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return block, index - key * _CACHE_BLOCK


class _Sources(Sequence):
    """``"file:frame"`` of each structure of a dataset, computed on access."""

    def __init__(self, dataset: PackedDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        return self.dataset.source(index)


class PackedDataset(Sequence):
    """The structures of a packed file, read lazily; a sequence of graph dicts.

    ``dataset[i]`` is the graph dict :func:`~mlff.data.graph.structure_to_graph` made of
    structure ``i`` when packing (same keys, dtypes, shapes and values). Iteration reads
    contiguous ranges; random access reads (and caches) small aligned blocks.

    Attributes:
        path: the packed file.
        cutoff: the neighbour-list radius it was packed with, Å.
        config_types: name of each integer ``config_type`` tag.
        files: the packed input files: ``{"path", "sha256", "frames"}`` each.
        fingerprint: SHA-256 identifying the input data (see the module docstring).
        label_keys: the label keys the inputs were read with.
    """

    def __init__(self, path: str | Path, _store: _Store | None = None,
                 _indices: np.ndarray | None = None) -> None:
        self._store = _store if _store is not None else _Store(path)
        self._indices = _indices  # file index of each position; None: all, in order

    # --- metadata ---
    @property
    def path(self) -> Path:
        """The packed file."""
        return self._store.path

    @property
    def cutoff(self) -> float:
        """The neighbour-list radius of the file, Å."""
        return self._store.cutoff

    @property
    def config_types(self) -> list[str]:
        """Name of each integer ``config_type`` tag."""
        return self._store.config_types

    @property
    def files(self) -> list[dict]:
        """The packed input files: ``{"path", "sha256", "frames"}`` each, in order."""
        return self._store.files

    @property
    def fingerprint(self) -> str:
        """SHA-256 identifying the input data."""
        return self._store.fingerprint

    @property
    def label_keys(self) -> LabelKeys:
        """The label keys the inputs were packed with."""
        return self._store.label_keys

    @property
    def sources(self) -> Sequence[str]:
        """``"file:frame"`` of each structure (computed on access)."""
        return _Sources(self)

    def __repr__(self) -> str:
        return f"PackedDataset({str(self.path)!r}, {len(self)} structures, cutoff {self.cutoff} Å)"

    # --- positions and sizes ---
    def __len__(self) -> int:
        return self._store.num_structures if self._indices is None else len(self._indices)

    def file_indices(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Index in the file of the structures at ``positions`` (default: all)."""
        if positions is None:
            return np.arange(len(self), dtype=np.int64) if self._indices is None else self._indices
        positions = np.asarray(positions, dtype=np.int64)
        return positions if self._indices is None else self._indices[positions]

    def _position(self, index) -> int:
        try:
            index = int(index)
        except TypeError:
            raise TypeError(
                f"indices must be integers or slices, not {type(index).__name__}"
            ) from None
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"structure {index} out of range for a dataset of {size}")
        return index

    def num_atoms(self, index: int) -> int:
        """Number of atoms of structure ``index`` (no read)."""
        return int(self._store.num_atoms_array[self.file_indices([self._position(index)])[0]])

    def atom_counts(self) -> np.ndarray:
        """Number of atoms of every structure, (len,) int64 (no read)."""
        return self._store.num_atoms_array[self.file_indices()]

    def edge_counts(self) -> np.ndarray:
        """Number of edges of every structure, (len,) int64 (no read)."""
        return self._store.num_edges_array[self.file_indices()]

    def source(self, index: int) -> str:
        """``"file:frame"`` of structure ``index``."""
        return self._store.source(int(self.file_indices([self._position(index)])[0]))

    # --- reading ---
    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.subset(range(len(self))[index])
        block, local = self._store.cached_block(int(self.file_indices([self._position(index)])[0]))
        return block.collate(np.array([local]))

    def read(self, positions: Sequence[int]) -> tuple[_Block, np.ndarray]:
        """The structures at ``positions`` as one block and their places in it (internal)."""
        return self._store.read(self.file_indices(np.asarray(positions, dtype=np.int64)))

    def collated(self, positions: Sequence[int]) -> Graph:
        """The collated graph dict of the structures at ``positions``, in that order."""
        block, local = self.read(positions)
        return block.collate(local)

    def iter_batches(self, size: int = 1024) -> Iterator[Graph]:
        """Collated graph dicts of ``size`` consecutive structures (the last may be smaller)."""
        for start in range(0, len(self), size):
            yield self.collated(np.arange(start, min(start + size, len(self))))

    def __iter__(self) -> Iterator[Graph]:
        for start in range(0, len(self), _CACHE_BLOCK * 4):
            block, local = self.read(np.arange(start, min(start + _CACHE_BLOCK * 4, len(self))))
            for k in local.tolist():
                yield block.collate(np.array([k]))

    def subset(self, indices: Sequence[int]) -> PackedDataset:
        """A view of the structures at ``indices`` (positions in this dataset), in that order."""
        positions = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices,
                               dtype=np.int64).reshape(-1)
        if len(positions) and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"subset index out of range for a dataset of {len(self)}")
        positions = np.where(positions < 0, positions + len(self), positions)
        return PackedDataset(self.path, _store=self._store, _indices=self.file_indices(positions))

    @property
    def atomic_numbers(self) -> list[int]:
        """Sorted distinct atomic numbers in the dataset."""
        if self._indices is None:
            return sorted(self._store.element_counts)
        found: set[int] = set()
        for batch in self.iter_batches():
            found.update(batch[K.ATOMIC_NUMBERS].unique().tolist())
        return sorted(found)

    def check_labels(self, require: Sequence[str]) -> None:
        """Raise if a structure lacks a label of ``require`` (``"energy"``, ...).

        Raises:
            DataError: naming the first structure without the label.
        """
        handle = self._store.handle()
        for label in require:
            flags = handle[f"has_{label}"][:]
            missing = np.flatnonzero(~flags[self.file_indices()])
            if len(missing):
                key = getattr(self.label_keys, label)
                raise DataError(
                    f"{self.source(int(missing[0]))} (packed in {self.path}): no {label} label "
                    f"under the key '{key}' ({len(missing)} structures lack it). Repack with "
                    f"the right key, or set the loss weight of {label} to 0."
                )

    def to_memory(self) -> GraphDataset:
        """All structures read into an in-memory :class:`GraphDataset`."""
        graphs = list(self)
        sources = [self.source(i) for i in range(len(self))]
        return GraphDataset(graphs, self.config_types, sources, self.fingerprint)


def open_packed(
    path: str | Path, cutoff: float, require: Sequence[str] = (), stream: bool = False
) -> GraphDataset | PackedDataset:
    """A packed data set for a model of ``cutoff``, checked for the ``require``d labels.

    Streamed from disk with ``stream``, else read into memory (no neighbour lists to compute).

    Raises:
        ConfigError: the file was packed with another cutoff.
        DataError: the file is not a packed data set, or a structure lacks a required label.
    """
    packed = PackedDataset(path)
    if not math.isclose(packed.cutoff, cutoff, rel_tol=0, abs_tol=1e-9):
        raise ConfigError(
            f"{path} was packed with cutoff {packed.cutoff} Å, but model.cutoff is {cutoff} Å; "
            "the neighbour lists must be built with the model's cutoff. Repack it: "
            f"`mlff data pack INPUT... --out {path} --cutoff {cutoff}`."
        )
    packed.check_labels(require)
    return packed if stream else packed.to_memory()


# --- shuffled batches in bounded memory ----------------------------------------------------
class ChunkedShuffleLoader:
    """Shuffled mini-batches of a packed dataset, holding only a window of structures.

    Epoch ``e`` cuts the dataset into contiguous chunks of ``chunk_structures``
    structures, visits the chunks in an order shuffled with ``(seed, e)``, reads each one
    with one contiguous read per array and visits its structures in a shuffled order. At
    most one chunk plus one partial batch is in memory, whatever the size of the set.
    The order depends only on ``(seed, epoch)``, so a resumed run sees the same batches.
    Same interface as :class:`~mlff.data.dataset.BatchLoader`.

    Args:
        dataset: the packed dataset (or a subset of one).
        batch_size: structures per batch (ignored when ``max_atoms`` is given).
        seed: seed of the order.
        chunk_structures: structures per chunk (the shuffle window).
        shuffle: shuffle chunks and structures; False: file order.
        max_atoms: form batches of at most this many atoms instead (a larger structure
            forms a batch of its own).

    Attributes:
        held: structures in memory now; ``peak_held``: the most held so far.
    """

    def __init__(self, dataset: PackedDataset, batch_size: int, seed: int = 0,
                 chunk_structures: int = 1024, shuffle: bool = True,
                 max_atoms: int | None = None) -> None:
        if chunk_structures < 1 or batch_size < 1:
            raise ValueError("batch_size and chunk_structures must be at least 1")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.chunk_structures = chunk_structures
        self.shuffle = shuffle
        self.max_atoms = max_atoms
        self.held = 0
        self.peak_held = 0
        self._sizes: np.ndarray | None = None

    @property
    def sizes(self) -> np.ndarray:
        """Number of atoms of each structure."""
        if self._sizes is None:
            self._sizes = self.dataset.atom_counts()
        return self._sizes

    def chunks(self, epoch: int = 0) -> Iterator[np.ndarray]:
        """The positions of each chunk of ``epoch``, in visiting order."""
        n, size = len(self.dataset), self.chunk_structures
        num_chunks = (n + size - 1) // size
        if not self.shuffle:
            for c in range(num_chunks):
                yield np.arange(c * size, min(n, (c + 1) * size), dtype=np.int64)
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for c in torch.randperm(num_chunks, generator=generator).tolist():
            start = c * size
            stop = min(n, start + size)
            yield start + torch.randperm(stop - start, generator=generator).numpy()

    def order(self, epoch: int = 0) -> np.ndarray:
        """Every position in the order of ``epoch``."""
        parts = list(self.chunks(epoch))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _full(self, count: int, atoms: int, size: int) -> bool:
        """Whether a batch of ``count`` structures and ``atoms`` atoms takes no more."""
        return batch_is_full(count, atoms, size, self.batch_size, self.max_atoms)

    def index_batches(self, epoch: int = 0) -> list[list[int]]:
        """The positions of each batch of ``epoch``."""
        return group_batches(self.order(epoch).tolist(), self.sizes, self.batch_size, self.max_atoms)

    def __len__(self) -> int:
        if self.max_atoms is not None:
            return len(self.index_batches(0))
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def batches(self, epoch: int = 0) -> Iterator[Graph]:
        """Yield collated batches (float64, CPU) for ``epoch``."""
        carry: Graph | None = None  # the first structures of a batch begun in the last chunk
        carry_count = carry_atoms = 0
        self.held = 0
        for positions in self.chunks(epoch):
            block, local = self.dataset.read(positions)
            self.held = len(block) + carry_count
            self.peak_held = max(self.peak_held, self.held)
            sizes = block.num_atoms[local]
            current: list[int] = []
            atoms = 0
            for k, size in zip(local.tolist(), sizes.tolist(), strict=True):
                if self._full(carry_count + len(current), carry_atoms + atoms, size):
                    if not current:
                        yield carry
                    else:
                        batch = block.collate(np.array(current, dtype=np.int64))
                        yield batch if carry is None else collate([carry, batch])
                    carry, carry_count, carry_atoms = None, 0, 0
                    current, atoms = [], 0
                current.append(k)
                atoms += size
            if current:
                rest = block.collate(np.array(current, dtype=np.int64))
                carry = rest if carry is None else collate([carry, rest])
                carry_count += len(current)
                carry_atoms += atoms
            del block
            self.held = carry_count
        if carry is not None:
            yield carry
        self.held = 0

    def __iter__(self) -> Iterator[Graph]:
        return self.batches(0)
