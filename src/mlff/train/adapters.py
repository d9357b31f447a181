"""Element-local fine-tuning: per-element adapters (``finetune.adapters``).

Fine-tuning a foundation model on data of a few elements moves weights every element
shares, so the model drifts on structures it was not fine-tuned on. With
``finetune.adapters: [H, C, O]`` the pretrained network gains, in every interaction
block, an adapter that acts on atoms of those elements only (the architecture's
``adapters`` option, where it has one; zero at the start, so training starts from the
pretrained predictions), and only element-local parameters train: the adapters and the
listed elements' entries of per-element parameters (species embedding, per-species
scale and shift). Everything else is frozen, so a structure without the listed elements
predicts exactly what the pretrained model does, however long the training.
"""

from __future__ import annotations

import torch
from ase.data import atomic_numbers
from torch import nn

from mlff.errors import ConfigError
from mlff.models.potential import Potential
from mlff.models.registry import architectures, build_model, get_architecture


def with_adapters(model: nn.Module, hyperparameters: dict, species: list[int],
                  symbols: list[str]) -> tuple[nn.Module, dict]:
    """``model`` (a potential's inner network, of ``species``: atomic numbers in the
    model's order) rebuilt with adapters for the elements ``symbols``, every weight
    carried over (the adapters' are zero), and its hyperparameters.

    Raises:
        ConfigError: the architecture has no adapters, the model has adapters already, or
            it lacks some of the elements (named).
    """
    architecture = hyperparameters.get("architecture")
    if not _has_adapters(type(model)):
        available = [name for name in architectures() if _has_adapters(get_architecture(name))]
        raise ConfigError(f"finetune.adapters: the {architecture} architecture has no "
                          "per-element adapters; they are available for "
                          f"{', '.join(available)} models. Remove finetune.adapters.")
    if hyperparameters.get("adapters"):
        raise ConfigError("finetune.adapters: the pretrained model has adapters already; "
                          "fine-tune it without finetune.adapters (its adapters train as "
                          "any weight), or start from the model it was made from.")
    missing = [s for s in symbols if atomic_numbers[s] not in species]
    if missing:
        raise ConfigError(f"finetune.adapters: the model has no {', '.join(missing)}; "
                          "adapters can be given to elements the model knows only.")
    indices = sorted(species.index(atomic_numbers[s]) for s in symbols)
    hyperparameters = {**hyperparameters, "adapters": indices}
    reference = next(iter(model.parameters()))
    with torch.random.fork_rng(devices=[]):  # the adapters are zero: no draw should count
        adapted = build_model(hyperparameters, len(species))
    adapted.to(device=reference.device, dtype=reference.dtype)
    missing_keys, unexpected = adapted.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(".adapters." in key for key in missing_keys), (
        missing_keys, unexpected)
    return adapted, hyperparameters


def _has_adapters(architecture: type) -> bool:
    return "adapters" in getattr(getattr(architecture, "Config", None), "model_fields", {})


def is_adapter(name: str) -> bool:
    """Whether the parameter ``name`` (of a potential) belongs to an adapter."""
    return ".adapters." in name


def train_element_local(potential: Potential) -> list[str]:
    """Freeze all but the element-local parameters of ``potential`` (a model with
    adapters): the adapters train, per-element parameters train in the adapted
    elements' entries only (the other entries' gradients are zeroed, so with Adam and
    no weight decay they stay exactly as they were), everything else stops training.
    Parameters frozen already stay frozen.

    Returns the names of the parameters that still train.

    Raises:
        ConfigError: an adapter is frozen (``finetune.freeze`` names it), so it could not
            learn anything.
    """
    model = potential.model
    adapted = torch.tensor(sorted(model.config.adapters), dtype=torch.long)
    index = model.species_parameters()
    training = []
    for name, parameter in potential.named_parameters():
        inner = name.removeprefix("model.")
        if is_adapter(name):
            if not parameter.requires_grad:
                raise ConfigError(f"finetune.freeze freezes {name}, an adapter of "
                                  "finetune.adapters, which would then do nothing: freeze "
                                  "fewer prefixes (model.layers.0.linear_1, not "
                                  "model.layers.0) or remove finetune.adapters.")
            training.append(name)
            continue
        if inner in index and parameter.requires_grad:
            mask = torch.isin(index[inner].species, adapted)
            if mask.any():
                mask = mask.to(parameter.dtype)
                parameter.register_hook(lambda grad, mask=mask: grad * mask.to(grad))
                training.append(name)
                continue
        parameter.requires_grad_(False)
    return training
