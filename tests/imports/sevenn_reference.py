"""sevenn's own SevenNet models, as references for the import tests (needs sevenn).

``float64_model(path)`` is sevenn's network in float64: built by sevenn from the
checkpoint's config as sevenn patches it, under float64 default dtype, with the
checkpoint's weights loaded and the one-hot species embedding (float32 in sevenn) cast
to float64. ``evaluate`` runs it the way sevenn's ASE calculator does.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from mlff.nn.dtype import default_dtype


def float64_model(path, modal: str | None = None):
    """sevenn's model of checkpoint ``path`` in float64, ready for :func:`evaluate`."""
    from sevenn.checkpoint import SevenNetCheckpoint
    from sevenn.model_build import build_E3_equivariant_model
    from sevenn.scripts.backward_compatibility import patch_state_dict_if_old

    checkpoint = SevenNetCheckpoint(str(path))
    config = checkpoint.config  # as sevenn patches it for this version
    with default_dtype(torch.float64):
        model = build_E3_equivariant_model(config)
        state = {k: v.double() if v.is_floating_point() else v
                 for k, v in checkpoint.model_state_dict.items()}
        state = patch_state_dict_if_old(state, config, model)
    model.load_state_dict(state, strict=True)
    model = model.double().eval()
    model.set_is_batch_data(False)

    def to_float64(module, args, data):
        for key in (module.key_output, module.key_additional_output):
            if key is not None and data[key].is_floating_point():
                data[key] = data[key].double()
        return data

    model._modules["onehot_idx_to_onehot"].register_forward_hook(to_float64)
    model._mlff_modal = modal
    return model


def evaluate(model, atoms: Atoms) -> dict[str, np.ndarray | float]:
    """Energy (eV), forces (eV/Å) and stress (ASE Voigt order, eV/Å³) of ``atoms``."""
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, model.cutoff))
    for key, value in list(data.items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            data[key] = value.double()
    if model._mlff_modal:
        data["data_modality"] = model._mlff_modal
    out = model(data)
    stress = -out["inferred_stress"].detach().numpy()[[0, 1, 2, 4, 5, 3]]
    return {
        "energy": float(out["inferred_total_energy"].detach()),
        "forces": out["inferred_force"].detach().numpy()[: len(atoms)],
        "stress": stress,
    }
