"""Reference labels minus D3: what a model trained with ``data.dispersion`` learns.

The D3 energy, forces and stress of every structure of a file are computed once and
cached (a safetensors file keyed by the file's content and the D3 settings), so a second
training run on the same data subtracts them without evaluating D3 again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.data.dispersion import D3, D3Settings

CACHE_VERSION = 1


def dispersion_labels(dataset: GraphDataset, settings: D3Settings) -> dict[str, torch.Tensor]:
    """D3 of every structure: ``energy`` (B,) eV, ``forces`` (ΣN, 3) eV/Å, ``stress``
    (B, 3, 3) eV/Å³ (zeros for structures not periodic in 3D); float64.

    Raises:
        DataError: a structure has an element without D3 parameters (named by file:frame).
    """
    d3 = D3(settings)
    energies, forces, stresses = [], [], []
    for graph, source in zip(dataset.graphs, dataset.sources, strict=True):
        pbc = graph[K.PBC].reshape(3).numpy()
        result = d3.compute(graph[K.ATOMIC_NUMBERS].numpy(), graph[K.POSITIONS].double().numpy(),
                            graph[K.CELL].reshape(3, 3).double().numpy(), pbc, where=source)
        energies.append(result.energy)
        forces.append(torch.from_numpy(result.forces))
        stresses.append(torch.zeros(3, 3, dtype=torch.float64) if result.stress is None
                        else torch.from_numpy(result.stress))
    return {
        "energy": torch.tensor(energies, dtype=torch.float64),
        "forces": torch.cat(forces) if forces else torch.zeros(0, 3, dtype=torch.float64),
        "stress": torch.stack(stresses) if stresses else torch.zeros(0, 3, 3, dtype=torch.float64),
    }


def _cache_file(dataset: GraphDataset, settings: D3Settings, cache_dir: Path) -> Path:
    key = json.dumps([CACHE_VERSION, dataset.fingerprint, settings.to_metadata(),
                      dataset.sources], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return cache_dir / f"d3-{digest}.safetensors"


def cached_dispersion_labels(dataset: GraphDataset, settings: D3Settings,
                             cache_dir: str | Path | None) -> dict[str, torch.Tensor]:
    """:func:`dispersion_labels`, read from ``cache_dir`` when computed before (and written
    there when not); ``cache_dir=None`` always computes."""
    settings = settings.resolved()
    path = None
    if cache_dir is not None and dataset.fingerprint:
        path = _cache_file(dataset, settings, Path(cache_dir))
        if path.is_file():
            try:
                labels = load_file(str(path))
            except Exception:  # a damaged cache is recomputed, never trusted
                labels = None
            if labels is not None and labels["energy"].shape[0] == len(dataset):
                return labels
    labels = dispersion_labels(dataset, settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(labels, str(tmp))
        os.replace(tmp, path)
    return labels


def subtract_dispersion(dataset: GraphDataset, settings: D3Settings,
                        cache_dir: str | Path | None = None) -> GraphDataset:
    """Subtract D3 from the energy, forces and stress labels of ``dataset``, in place.

    Labels a structure lacks stay absent; a stress label of a structure not periodic in
    3D is left as it is (D3 gives it none). Returns ``dataset``.
    """
    labels = cached_dispersion_labels(dataset, settings, cache_dir)
    start = 0
    for b, graph in enumerate(dataset.graphs):
        n = int(graph[K.POSITIONS].shape[0])
        if K.ENERGY in graph:
            graph[K.ENERGY] = graph[K.ENERGY] - labels["energy"][b].to(graph[K.ENERGY].dtype)
        if K.FORCES in graph:
            forces = labels["forces"][start:start + n]
            graph[K.FORCES] = graph[K.FORCES] - forces.to(graph[K.FORCES].dtype)
        if K.STRESS in graph and bool(graph[K.PBC].all()):
            stress = labels["stress"][b].reshape(graph[K.STRESS].shape)
            graph[K.STRESS] = graph[K.STRESS] - stress.to(graph[K.STRESS].dtype)
        start += n
    return dataset
