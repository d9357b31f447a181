"""What fine-tuning decides about a pretrained model's elements and reference energies.

- Species: with no new element, the fine-tuned model keeps the pretrained model's species
  list *in its order*: an imported model (one-hot inputs and per-species scale and shift of
  the original code) is indexed by that order, which need not be by atomic number. An imported
  (foundation) model cannot learn a new element from a few structures: an element it
  lacks is an error naming it.
- E0s: a pretrained model trained against another DFT code, basis or functional predicts
  energies offset from the new data by a per-element constant. With ``keep_e0s: auto``
  the mean per-atom offset of the pretrained model on the new training energies is
  measured; beyond :data:`REFERENCE_OFFSET` (no model error is that large: another
  reference) the E0s of the data's elements are refitted to it (least squares of the
  residuals on per-element counts) instead of being inherited; beyond
  :data:`OFFSET_WARNING` they are kept with a warning. ``keep_e0s: true`` keeps them and
  warns beyond :data:`OFFSET_WARNING`; ``false`` always refits.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from ase.data import chemical_symbols

from mlff.data import keys as K
from mlff.data.dataset import BatchLoader, GraphDataset
from mlff.data.graph import to_device
from mlff.errors import DataError, DataWarning
from mlff.models.potential import Potential
from mlff.train.config import TrainConfig

# mean per-atom energy offsets (eV/atom): beyond the first, another DFT reference (E0s
# refitted with keep_e0s: auto); beyond the second, worth a warning
REFERENCE_OFFSET = 1.0
OFFSET_WARNING = 0.1


def is_imported(metadata: dict[str, Any]) -> bool:
    """Whether a model file's metadata records weights imported from another code."""
    provenance = metadata.get("provenance") or {}
    return isinstance(provenance, dict) and bool(provenance.get("original_code"))


def finetune_species(config: TrainConfig, metadata: dict[str, Any], old_species: list[int],
                     data_species: list[int]) -> list[int]:
    """The species list (atomic numbers, in model order) of the fine-tuned model.

    Raises:
        DataError: the pretrained model is imported and lacks elements of the data.
    """
    missing = sorted(set(data_species) - set(old_species))
    if not missing:
        return list(old_species)
    if is_imported(metadata):
        code = metadata["provenance"]["original_code"]
        names = ", ".join(chemical_symbols[z] for z in missing)
        raise DataError(
            f"the training data hold {names}, which the pretrained model "
            f"{config.finetune.init_from} (imported from {code}) does not know. A foundation "
            "model cannot learn an element from a fine-tuning set: remove the structures "
            f"with {names}, or train a model that covers them from scratch."
        )
    return sorted(set(old_species) | set(data_species))


def energy_offset(potential: Potential, dataset: GraphDataset, max_structures: int = 256) -> float:
    """Mean of (E_data - E_model) / atoms over up to ``max_structures`` structures, eV/atom.

    ``nan`` when no structure has an energy.
    """
    subset = dataset.subset(range(min(len(dataset), max_structures)))
    errors = []
    with torch.no_grad():
        for batch in BatchLoader(subset, 32, shuffle=False).batches():
            batch = to_device(batch, potential.device, potential.dtype)
            predicted = potential(batch, compute_forces=False)[K.ENERGY]
            residual = (batch[K.ENERGY].to(torch.float64) - predicted) / batch[K.NUM_ATOMS]
            errors.append(residual[batch[K.HAS_ENERGY]])
    values = torch.cat(errors) if errors else torch.zeros(0)
    return float(values.mean()) if values.numel() else float("nan")


def e0s_to_refit(config: TrainConfig, potential: Potential, dataset: GraphDataset,
                 old_species: list[int], data_species: list[int]) -> list[int]:
    """The elements whose E0s are fitted to the model's residuals on ``dataset``.

    ``keep_e0s: false``: all of the data's elements (with ``data.e0s: least_squares``).
    ``true``: new elements only (with ``least_squares``); an offset beyond
    :data:`OFFSET_WARNING` is warned about. ``auto``: likewise, but all of the data's
    elements when the offset is beyond :data:`REFERENCE_OFFSET` (then whatever
    ``data.e0s`` says: isolated-atom energies do not describe a network that already
    outputs absolute energies).
    """
    keep = config.finetune.keep_e0s
    new = [z for z in data_species if z not in old_species]
    least_squares = config.data.e0s == "least_squares"
    if keep is False:
        return list(data_species) if least_squares else []
    offset = energy_offset(potential, dataset)
    size = abs(offset) if offset == offset else 0.0
    if keep is True or size <= REFERENCE_OFFSET:
        if size > OFFSET_WARNING:
            setting = "true keeps" if keep is True else "auto keeps (below 1 eV/atom)"
            warnings.warn(
                f"finetune.keep_e0s: {setting} the pretrained E0s, but the pretrained model's "
                f"energies are {offset:+.3f} eV/atom off the new training data's (another DFT "
                "reference?); fine-tuning must then learn that offset. Set keep_e0s: false "
                "to refit the E0s.", DataWarning, stacklevel=2)
        return new if least_squares else []
    names = ", ".join(chemical_symbols[z] for z in data_species)
    warnings.warn(
        f"the pretrained model's energies are {offset:+.3f} eV/atom off the new training "
        f"data's: refitting the E0s of {names} to the new data (finetune.keep_e0s: auto; "
        "set it to true to inherit them).", DataWarning, stacklevel=2)
    return list(data_species)

