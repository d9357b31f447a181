"""Replay labelled by the pretrained model itself, so fine-tuning keeps what it knew.

With ``finetune.replay`` a fine-tuning run mixes into every epoch structures around the
user's own (copies of the training structures, or of a file's, each rattled by Gaussian
displacements and deformed by a random symmetric strain) whose labels are the
predictions of the model as it is before training: the pretrained network, with the E0s
already fitted to the new data's reference. Their loss is exactly 0 at the start and
grows only where training moves the model away from the pretrained one; the loss weight
factor ``finetune.replay.weight`` sets how strongly that is resisted. The replay
structures carry the config_type :data:`REPLAY_CONFIG_TYPE`, so validation metrics and
the ``data.config_type_weights`` machinery see them like any other category.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import ase.io
import numpy as np
import torch
from ase import Atoms

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset, file_fingerprint
from mlff.data.graph import structure_to_graph, to_device
from mlff.data.readers import Structure
from mlff.errors import ConfigError, DataError
from mlff.models.potential import Potential
from mlff.train.config import REPLAY_CONFIG_TYPE, TrainConfig

if TYPE_CHECKING:
    from mlff.train.data import TrainingData


def graph_atoms(graph: dict[str, torch.Tensor]) -> Atoms:
    """The structure of one graph dict (positions Å, numbers, cell, pbc), without labels."""
    pbc = graph[K.PBC].reshape(3).tolist()
    return Atoms(
        numbers=graph[K.ATOMIC_NUMBERS].tolist(),
        positions=graph[K.POSITIONS].detach().cpu().numpy(),
        cell=graph[K.CELL].reshape(3, 3).detach().cpu().numpy(),
        pbc=pbc,
    )


def perturb(atoms: Atoms, rng: np.random.Generator, rattle: float, strain: float) -> Atoms:
    """A copy of ``atoms``, strained and rattled.

    The random symmetric strain ε has |ε_ij| ≤ ``strain``; the Gaussian displacements
    have the standard deviation ``rattle`` (Å).

    The strain acts on the cell and the positions alike (about the centre of mass for a
    structure periodic in no direction, so a molecule's bonds stretch without it moving).
    """
    atoms = atoms.copy()
    if strain > 0:
        epsilon = rng.uniform(-strain, strain, size=(3, 3))
        deformation = np.eye(3) + 0.5 * (epsilon + epsilon.T)
        if atoms.pbc.any():
            atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        else:
            centre = atoms.positions.mean(axis=0)
            atoms.positions = centre + (atoms.positions - centre) @ deformation
    if rattle > 0:
        atoms.positions = atoms.positions + rng.normal(0.0, rattle, size=atoms.positions.shape)
    return atoms


def _seed_structures(config: TrainConfig, train: GraphDataset) -> tuple[list[Atoms], list[str]]:
    """The structures replay copies are made of, and their sources."""
    replay = config.finetune.replay
    if replay.structures == "train":
        return [graph_atoms(g) for g in train], list(train.sources)
    try:
        frames = ase.io.read(replay.structures, ":")
    except Exception as exc:  # ASE raises many kinds for an unreadable file
        raise DataError(
            f"{replay.structures}: cannot read finetune.replay.structures ({exc}). Give a "
            "structure file ASE can read, or 'train' for the training structures."
        ) from None
    if not frames:
        raise DataError(f"{replay.structures}: finetune.replay.structures holds no structures.")
    return [a.copy() for a in frames], [f"{replay.structures}:{i}" for i in range(len(frames))]


def replay_structures(config: TrainConfig, train: GraphDataset) -> tuple[list[Atoms], list[str]]:
    """The unlabelled replay structures (``finetune.replay.count`` of them) and their sources.

    Seeds are drawn cyclically in a permutation seeded by ``config.seed``; each copy gets
    its own random strain and displacements from the same generator.
    """
    replay = config.finetune.replay
    seeds, sources = _seed_structures(config, train)
    count = replay.count if replay.count is not None else len(train)
    rng = np.random.default_rng(config.seed)
    order: list[int] = []
    while len(order) < count:
        order += rng.permutation(len(seeds)).tolist()
    chosen = order[:count]
    structures = [perturb(seeds[i], rng, replay.rattle, replay.strain) for i in chosen]
    described = [f"replay {k} of {sources[i]} (rattle {replay.rattle:g} Å, strain "
                 f"{replay.strain:g})" for k, i in enumerate(chosen)]
    return structures, described


def pseudo_label(
    potential: Potential, structures: Sequence[Atoms], sources: Sequence[str], cutoff: float,
    stress: bool = False,
) -> GraphDataset:
    """``structures`` labelled with the energies and forces ``potential`` predicts.

    Args:
        potential: the labelling model (its device and dtype are used).
        structures: the structures, Å.
        sources: one description per structure, for messages.
        cutoff: neighbour-list radius, Å.
        stress: also label the stress of periodic structures (eV/Å³).

    Returns:
        a dataset whose only config_type is :data:`REPLAY_CONFIG_TYPE`.
    """
    missing = sorted({int(z) for a in structures for z in a.numbers} - set(potential.species))
    if missing:
        from ase.data import chemical_symbols

        names = ", ".join(chemical_symbols[z] for z in missing)
        raise DataError(f"finetune.replay.structures holds {names}, which the model does not "
                        "know; replay only structures of its elements.")
    graphs = []
    was_training = potential.training
    potential.eval()
    try:
        for atoms, source in zip(structures, sources, strict=True):
            unlabelled = structure_to_graph(Structure(atoms=atoms, source=source), cutoff)
            batch = to_device(unlabelled, potential.device, potential.dtype)
            periodic = bool(atoms.pbc.all())
            pred = potential(batch, compute_forces=True, compute_stress=stress and periodic)
            labelled = Structure(
                atoms=atoms,
                energy=float(pred[K.ENERGY][0].detach()),
                forces=pred[K.FORCES].detach().cpu().to(torch.float64).numpy(),
                stress=(pred[K.STRESS][0].detach().cpu().to(torch.float64).numpy()
                        if stress and periodic else None),
                config_type=REPLAY_CONFIG_TYPE,
                source=source,
            )
            graphs.append(structure_to_graph(labelled, cutoff))
    finally:
        potential.train(was_training)
    return GraphDataset(graphs, [REPLAY_CONFIG_TYPE], list(sources))


def add_pseudo_labelled_replay(config: TrainConfig, data: TrainingData,
                               potential: Potential) -> int:
    """Add ``finetune.replay``'s structures, labelled by ``potential``, to ``data.train``.

    Call it with the model as fine-tuning starts (pretrained weights, fitted E0s). Records
    the replay set in ``data.fingerprints["pseudo_replay"]`` (the structure file's SHA-256,
    or ``"train"``). Returns the number of replay structures added (0 without replay).

    Raises:
        ConfigError: the training data already uses the replay config_type.
        DataError: the structure file is unreadable, empty, or has unknown elements.
    """
    from mlff.train.finetune import _concatenate

    finetune = config.finetune
    if finetune is None or finetune.replay is None:
        return 0
    if REPLAY_CONFIG_TYPE in (*data.train.config_types, *data.valid.config_types):
        raise ConfigError(f"the training data already has structures of config_type "
                          f"{REPLAY_CONFIG_TYPE!r}, the name of finetune.replay's structures; "
                          "rename that config_type in the data.")
    structures, sources = replay_structures(config, data.train)
    losses = (config.training.loss, config.training.stage_two_loss())
    stress = any(loss.stress_weight > 0 for loss in losses)
    replay = pseudo_label(potential, structures, sources, float(config.model.cutoff), stress)
    data.train = _concatenate(data.train, replay)
    spec = finetune.replay.structures
    data.fingerprints["pseudo_replay"] = "train" if spec == "train" else file_fingerprint(spec)
    return len(replay)


def loss_factors(config: TrainConfig) -> dict[str, float]:
    """``data.config_type_weights`` with the replay structures' ``finetune.replay.weight``."""
    weights = dict(config.data.config_type_weights)
    if config.finetune is not None and config.finetune.replay is not None:
        weights[REPLAY_CONFIG_TYPE] = config.finetune.replay.weight
    return weights
