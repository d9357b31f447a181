"""The model a training run starts from: built or fine-tuned, checked, on its device."""

from __future__ import annotations

import torch
from rich.console import Console

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.models.contract import hyperparameters_from_data
from mlff.models.heads import add_heads
from mlff.models.potential import Potential
from mlff.models.predict import batched_outputs
from mlff.models.registry import build_model, get_architecture
from mlff.train.config import ResolvedConfig, TrainConfig
from mlff.train.data import TrainingData
from mlff.train.finetune import freeze, is_head_prefix, potential_from_pretrained
from mlff.train.guards import check_loss_weights, check_trainable
from mlff.train.replay import add_pseudo_labelled_replay


# the heads of finetune.multihead: the training data's, and the replay structures'
MULTIHEAD_NAMES = ("main", "foundation")


def head_of_config_type(config: TrainConfig, config_types: list[str]) -> torch.Tensor | None:
    """Per config_type tag, the head its structures train (finetune.multihead: 1, the
    foundation head, for the replay structures, else 0); None for a single-head run."""
    from mlff.train.config import REPLAY_CONFIG_TYPE

    if config.finetune is None or not config.finetune.multihead:
        return None
    return torch.tensor([1 if name == REPLAY_CONFIG_TYPE else 0 for name in config_types],
                        dtype=torch.int64)


def build_potential(
    config: TrainConfig, data: TrainingData, avg_num_neighbors: float | None = None
) -> Potential:
    """Build the architecture of ``config`` with the normalisation from ``data``.

    An ``avg_num_neighbors`` hyperparameter the config leaves ``null`` is set to the
    ``avg_num_neighbors`` argument (a resumed run's stored value) or else to the training
    data's mean number of neighbours per atom, so the model file stores the number. A
    fine-tuned model keeps the pretrained model's hyperparameters.
    """
    if config.finetune is not None:
        return potential_from_pretrained(config, data)
    assert config.model is not None
    hyperparameters = hyperparameters_from_data(
        get_architecture(config.model.architecture),
        config.model.model_dump(),
        avg_num_neighbors if avg_num_neighbors is not None else data.avg_num_neighbors,
    )
    model = build_model(hyperparameters, len(data.species))
    return Potential(model, hyperparameters, data.species, [data.e0s[z] for z in data.species],
                     scale=data.scale, shift=data.shift)


def align_energy_offset(potential: Potential, dataset: GraphDataset,
                        max_structures: int = 256) -> float:
    """Fold the untrained model's mean per-atom energy error into ``shift``.

    A freshly initialised network predicts per-atom energies offset by a random constant;
    removing it before training spares the optimizer many epochs of learning a constant.
    Returns the correction, eV/atom.
    """
    subset = dataset.subset(range(min(len(dataset), max_structures)))
    errors = []
    with torch.no_grad():
        for batch, pred in batched_outputs(potential, subset, 64, compute_forces=False):
            has = batch[K.HAS_ENERGY]
            errors.append(((pred[K.ENERGY] - batch[K.ENERGY]) / batch[K.NUM_ATOMS])[has])
    if not errors or sum(e.numel() for e in errors) == 0:
        return 0.0
    correction = float(torch.cat(errors).mean())
    potential.shift.sub_(correction)
    return correction


def starting_potential(config: ResolvedConfig, data: TrainingData, console: Console,
                       device: torch.device, dtype: torch.dtype,
                       avg_num_neighbors: float | None = None) -> tuple[Potential, int]:
    """The potential to train, on ``device`` in ``dtype``, and the number of replay
    structures labelled by it and added to ``data.train`` (fine-tuning's ``replay``).

    ``avg_num_neighbors``: the value a resumed run stored (see :func:`build_potential`).
    """
    potential = build_potential(config, data, avg_num_neighbors)
    # fine-tuning replay: labelled by the model as it starts (pretrained weights, new E0s)
    replay_added = add_pseudo_labelled_replay(config, data, potential)
    if config.finetune is not None and config.finetune.multihead:
        # after labelling: both heads start as the pretrained readout, so the replay
        # structures' loss is 0 for the foundation head at the start
        add_heads(potential, list(MULTIHEAD_NAMES))
        freeze(potential, [p for p in config.finetune.freeze if is_head_prefix(p)])
        console.print(f"multi-head: '{MULTIHEAD_NAMES[0]}' learns the training data, "
                      f"'{MULTIHEAD_NAMES[1]}' the {replay_added} replay structures' "
                      "pseudo-labels", highlight=False)
    check_trainable(potential, config)
    check_loss_weights(config.training.loss)
    if config.finetune is None:  # the hyperparameters the data (or checkpoint) filled in
        origin = "the checkpoint" if avg_num_neighbors is not None else "the training data"
        given = config.model.model_dump()
        for key, value in potential.hyperparameters.items():
            if given.get(key, 0) is None and value is not None:
                console.print(f"model.{key} = {value:.4f} (from {origin})", highlight=False)
    # an element absent from the training set has no embedding: name its file and frame
    for dataset in (data.valid, data.test):
        if dataset is not None:
            potential.check_structures(dataset, dataset.sources)
    potential = potential.to(device=device, dtype=dtype)
    if config.finetune is None:  # a pretrained model's offset is meaningful
        align_energy_offset(potential, data.train)
    potential.metadata = {"data_fingerprint": data.fingerprints}
    return potential, replay_added
