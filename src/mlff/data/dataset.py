"""In-memory datasets of graph dicts, with an on-disk cache of the neighbour lists.

Building a dataset reads the structures and computes every neighbour list once; the
result is written to a safetensors cache keyed by the file's content, the cutoff and the
label keys, so a second run with the same data loads in a fraction of the time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from mlff.data import keys as K
from mlff.data.graph import Graph, collate, structure_to_graph
from mlff.data.deepmd import is_deepmd_dir
from mlff.data.readers import LabelKeys, Structure, read_structures

CACHE_VERSION = 1
_PROGRESS_THRESHOLD = 200  # show a progress bar for sets at least this large


def default_cache_dir() -> Path:
    """``$MLFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlff``, else ``~/.cache/mlff``."""
    if "MLFF_CACHE_DIR" in os.environ:
        return Path(os.environ["MLFF_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "mlff"


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex); for a directory (deepmd/npy data), of the relative
    path, size and bytes of every file in it, in sorted path order."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file()),
                       key=lambda p: p.relative_to(path).as_posix())
        for file in files:
            name = file.relative_to(path).as_posix().encode()
            digest.update(len(name).to_bytes(8, "little") + name)
            digest.update(file.stat().st_size.to_bytes(8, "little"))
            _hash_bytes(digest, file)
        return digest.hexdigest()
    _hash_bytes(digest, path)
    return digest.hexdigest()


def _hash_bytes(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


class GraphDataset(Sequence):
    """A list of graph dicts (float64, CPU) with the names of their config_types.

    Attributes:
        graphs: one graph dict per structure.
        config_types: name of each integer ``config_type`` tag.
        sources: ``"file:frame"`` of each structure.
        fingerprint: SHA-256 over the source files' contents, or ``""``.
    """

    def __init__(
        self,
        graphs: list[Graph],
        config_types: list[str],
        sources: list[str],
        fingerprint: str = "",
    ) -> None:
        self.graphs = graphs
        self.config_types = config_types
        self.sources = sources
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.subset(range(len(self))[index])
        return self.graphs[index]

    def subset(self, indices: Sequence[int]) -> GraphDataset:
        """The structures at ``indices``, in that order."""
        indices = [int(i) for i in indices]
        return GraphDataset(
            [self.graphs[i] for i in indices],
            self.config_types,
            [self.sources[i] for i in indices],
            self.fingerprint,
        )

    @property
    def atomic_numbers(self) -> list[int]:
        """Sorted distinct atomic numbers in the dataset."""
        found = set()
        for graph in self.graphs:
            found.update(graph[K.ATOMIC_NUMBERS].unique().tolist())
        return sorted(found)

    @classmethod
    def from_structures(
        cls, structures: Sequence[Structure], cutoff: float, fingerprint: str = "",
        progress: bool | None = None,
    ) -> GraphDataset:
        """Compute the neighbour lists of ``structures`` and build the dataset."""
        config_types = sorted({s.config_type for s in structures})
        tag = {name: i for i, name in enumerate(config_types)}
        show = len(structures) >= _PROGRESS_THRESHOLD if progress is None else progress
        graphs = []
        with _progress(show) as bar:
            task = bar.add_task("neighbour lists", total=len(structures))
            for structure in structures:
                graphs.append(structure_to_graph(structure, cutoff, tag[structure.config_type]))
                bar.advance(task)
        return cls(graphs, config_types, [s.source for s in structures], fingerprint)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        cutoff: float,
        keys: LabelKeys = LabelKeys(),
        require: Sequence[str] = (),
        cache_dir: str | Path | None = None,
        progress: bool | None = None,
    ) -> GraphDataset:
        """Read a structure file and build its dataset, through the cache when given.

        Args:
            path: any file ASE can read, or a deepmd/npy directory.
            cutoff: neighbour-list radius, Å.
            keys: where the labels are stored.
            require: labels each frame must have.
            cache_dir: folder of cached neighbour lists; ``None`` disables caching.
            progress: show a progress bar (default: for large files only).

        Raises:
            DataError: as :func:`mlff.data.readers.read_structures`.
        """
        path = Path(path)
        structures = None
        if not (path.is_file() or is_deepmd_dir(path)):  # let the reader raise its clear error
            structures = read_structures(path, keys, require=require)
        fingerprint = file_fingerprint(path)
        cache_file = None
        if cache_dir is not None:
            cache_key = json.dumps(
                [CACHE_VERSION, fingerprint, float(cutoff), asdict(keys), sorted(require)]
            )
            digest = hashlib.sha256(cache_key.encode()).hexdigest()[:32]
            cache_file = Path(cache_dir) / f"{path.stem}-{digest}.safetensors"
            if cache_file.is_file():
                cached = _load_cache(cache_file, fingerprint)
                if cached is not None:
                    return cached
        if structures is None:
            structures = read_structures(path, keys, require=require)
        dataset = cls.from_structures(structures, cutoff, fingerprint, progress)
        if cache_file is not None:
            _save_cache(dataset, cache_file)
        return dataset


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not show, transient=True,
    )


def _save_cache(dataset: GraphDataset, cache_file: Path) -> None:
    """Write the dataset as one collated graph plus per-structure sizes (atomic rename)."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tensors = collate(dataset.graphs)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    tensors["_num_edges"] = torch.tensor([g[K.EDGE_INDEX].shape[1] for g in dataset.graphs])
    metadata = {
        "config_types": json.dumps(dataset.config_types),
        "sources": json.dumps(dataset.sources),
        "fingerprint": dataset.fingerprint,
    }
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, cache_file)


def _load_cache(cache_file: Path, fingerprint: str) -> GraphDataset | None:
    """Split a cached collated graph back into structures; ``None`` if unusable."""
    try:
        from safetensors import safe_open

        with safe_open(str(cache_file), framework="pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(cache_file))
    except Exception:  # a corrupt or partial cache is rebuilt, never trusted
        return None
    if metadata.get("fingerprint") != fingerprint:
        return None
    num_atoms = tensors[K.NUM_ATOMS].tolist()
    num_edges = tensors.pop("_num_edges").tolist()
    atom_starts = np.cumsum([0, *num_atoms[:-1]]).tolist()
    per_atom = {k: torch.split(tensors[k], num_atoms) for k in K.PER_ATOM_KEYS if k in tensors}
    per_structure = {k: torch.split(tensors[k], 1) for k in K.PER_STRUCTURE_KEYS if k in tensors}
    edge_index = torch.split(tensors[K.EDGE_INDEX], num_edges, dim=1)
    edge_shift = torch.split(tensors[K.EDGE_SHIFT], num_edges)
    graphs = []
    for i, start in enumerate(atom_starts):
        graph = {k: v[i].clone() for k, v in per_atom.items()}
        graph.update({k: v[i].clone() for k, v in per_structure.items()})
        graph[K.BATCH] = torch.zeros(num_atoms[i], dtype=torch.int64)
        graph[K.EDGE_INDEX] = edge_index[i] - start
        graph[K.EDGE_SHIFT] = edge_shift[i].clone()
        graphs.append(graph)
    return GraphDataset(
        graphs,
        json.loads(metadata["config_types"]),
        json.loads(metadata["sources"]),
        fingerprint,
    )


def batch_is_full(
    count: int, atoms: int, next_size: int, batch_size: int, max_atoms: int | None
) -> bool:
    """Whether a batch of ``count`` structures and ``atoms`` atoms must close before a
    structure of ``next_size`` atoms: at ``batch_size`` structures, or, with an atom
    budget, when the next structure would exceed it (a batch is never empty)."""
    if max_atoms is None:
        return count >= batch_size
    return count > 0 and atoms + next_size > max_atoms


def group_batches(
    order: Sequence[int], sizes: Sequence[int] | None, batch_size: int, max_atoms: int | None
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches (see :func:`batch_is_full`).

    ``sizes`` (atoms per structure, indexed like ``order``'s entries) is needed only with
    ``max_atoms``.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = 0
    for index in order:
        size = int(sizes[index]) if sizes is not None else 0
        if batch_is_full(len(current), atoms, size, batch_size, max_atoms):
            batches.append(current)
            current, atoms = [], 0
        current.append(index)
        atoms += size
    if current:
        batches.append(current)
    return batches


class BatchLoader:
    """Deterministic mini-batches of a dataset, by structure count or by atom budget.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a run resumed at an epoch
    boundary sees exactly the batches of an uninterrupted run.

    Args:
        dataset: the structures (any sequence of graph dicts).
        batch_size: structures per batch (ignored when ``max_atoms`` is given).
        shuffle: shuffle the order every epoch.
        seed: seed of the order.
        max_atoms: form batches of at most this many atoms instead (a larger structure
            forms a batch of its own), so batches of small and large structures cost alike.
        num_workers: processes that collate batches in the background (0: in this one).
        pin_memory: return batches in pinned memory (faster copies to a GPU).
    """

    def __init__(
        self,
        dataset: Sequence[Graph],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        max_atoms: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.max_atoms = max_atoms
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self._sizes: list[int] | None = None

    def __len__(self) -> int:
        if self.max_atoms is not None:
            return len(self.index_batches(0))
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    @property
    def sizes(self) -> list[int]:
        """Number of atoms of each structure."""
        if self._sizes is None:
            if hasattr(self.dataset, "atom_counts"):  # a packed set knows them without reading
                self._sizes = [int(n) for n in self.dataset.atom_counts()]
            else:
                self._sizes = [int(graph[K.NUM_ATOMS].sum()) for graph in self.dataset]
        return self._sizes

    def index_batches(self, epoch: int = 0) -> list[list[int]]:
        """The structure indices of each batch of ``epoch``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.dataset), generator=generator).tolist()
        else:
            order = list(range(len(self.dataset)))
        sizes = self.sizes if self.max_atoms is not None else None
        return group_batches(order, sizes, self.batch_size, self.max_atoms)

    def batches(self, epoch: int = 0) -> Iterator[Graph]:
        """Yield collated batches (float64, CPU) for ``epoch``."""
        index_batches = self.index_batches(epoch)
        if self.num_workers == 0 and not self.pin_memory:
            for indices in index_batches:
                yield collate([self.dataset[i] for i in indices])
            return
        loader = torch.utils.data.DataLoader(
            _CollatedBatches(self.dataset, index_batches),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        yield from loader

    def __iter__(self) -> Iterator[Graph]:
        return self.batches(0)


class _CollatedBatches(torch.utils.data.Dataset):
    """Batch k = the collated structures of ``index_batches[k]`` (for DataLoader workers)."""

    def __init__(self, dataset: Sequence[Graph], index_batches: list[list[int]]) -> None:
        self.dataset = dataset
        self.index_batches = index_batches

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, k: int) -> Graph:
        return collate([self.dataset[i] for i in self.index_batches[k]])
