"""Readout heads: several energy readouts on one shared network (multi-head models).

A multi-head model (so far: :class:`mlff.models.sevennet.SevenNet` with ``heads``) has
one set of interaction layers and several readouts, each fitted to its own reference
(for example ``main``: the user's DFT, ``foundation``: a foundation model's own
predictions). Its hyperparameter ``head`` names the one it evaluates by default; the
others are chosen with :func:`select_head`, which returns an ordinary single-head model
(what the ASE calculator and ``mlff deploy`` run).
"""

from __future__ import annotations

from typing import Any

import torch

from mlff.errors import ConfigError
from mlff.models.potential import Potential
from mlff.models.registry import build_model
from mlff.nn.equivariant import settle_codegen

# the state-dict prefixes of a SevenNet readout head (the first head's, inside ``model.``)
_HEAD_PARTS = ("readout_hidden.", "readout.", "scale_shift.")


def head_names(potential: Any) -> list[str]:
    """The names of ``potential``'s readout heads (empty for a single-head model)."""
    hyperparameters = getattr(potential, "hyperparameters", None) or {}
    return list(hyperparameters.get("heads") or [])


def default_head(potential: Potential) -> str | None:
    """The head ``potential`` evaluates when none is named (None: single head)."""
    names = head_names(potential)
    if not names:
        return None
    return potential.hyperparameters.get("head") or names[0]


def add_heads(potential: Potential, names: list[str]) -> None:
    """Turn single-head ``potential`` into a multi-head one, in place.

    Every head starts as a copy of the present readout (so each predicts exactly what
    ``potential`` predicted), and the first of ``names`` is evaluated by default. The
    copies' parameters train or stay frozen as the readout's do. Parameters keep their
    identity (gradient hooks and optimizer entries made before stay valid).

    Raises:
        ConfigError: the architecture has no readout heads, the model already has heads,
            or ``names`` are not two or more distinct names.
    """
    if not isinstance(getattr(potential.model, "extra_heads", None), torch.nn.ModuleDict):
        architecture = potential.hyperparameters.get("architecture")
        raise ConfigError(f"the {architecture} architecture has no readout heads; multi-head "
                          "models are available for sevennet models (e.g. imported SevenNet-0).")
    if head_names(potential):
        raise ConfigError(f"the model already has the heads {head_names(potential)}; fine-tune "
                          "it without finetune.multihead, or start from a single-head model.")
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"heads must be two or more distinct names, not {names}.")
    from mlff.models.sevennet import ReadoutHead

    model = potential.model
    first = model.readout_hidden
    dtype, device = potential.dtype, potential.device
    heads = {}
    for name in names[1:]:
        head = ReadoutHead(first.irreps_in, first.irreps_out, model.num_species)
        settle_codegen(head)
        head.to(device=device, dtype=dtype)
        head.load_state_dict({key: value for key, value in model.state_dict().items()
                              if key.startswith(_HEAD_PARTS)})
        for (_, mine), (key, theirs) in zip(head.named_parameters(),
                                            _first_head_parameters(model), strict=True):
            mine.requires_grad_(theirs.requires_grad)
        heads[name] = head
    model.extra_heads = torch.nn.ModuleDict(heads)
    model.head_names = list(names)
    model.head_index = 0
    potential.hyperparameters = {**potential.hyperparameters, "heads": list(names),
                                 "head": names[0]}
    model.config = type(model.config).model_validate(
        {**model.config.model_dump(), "heads": list(names), "head": names[0]})


def _first_head_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if name.startswith(_HEAD_PARTS)]


def model_with_head(model: Any, head: str | None, single: bool = False) -> Any:
    """``model`` evaluating readout head ``head`` (:func:`select_head`); with ``head`` None,
    ``model`` as it is (it evaluates its default head), or with ``single``, a multi-head
    model as the single-head model of its default head.

    Raises:
        ConfigError: a head is named for a committee or a single-head model, or the model
            has no head of that name.
    """
    if head is None and not (single and head_names(model)):
        return model
    if not isinstance(model, Potential):
        raise ConfigError(f"head {head!r} was asked for, but a committee has no heads; "
                          "leave the head out.")
    return select_head(model, head)


def select_head(potential: Potential, name: str | None = None) -> Potential:
    """A single-head copy of ``potential`` that evaluates head ``name`` (default: the
    model's default head), on the same device and in the same dtype; a single-head
    ``potential`` with ``name`` None is returned as it is.

    Raises:
        ConfigError: ``name`` is not a head of the model (the message lists them), or a
            head is named for a single-head model.
    """
    names = head_names(potential)
    if not names:
        if name is not None:
            raise ConfigError(f"head {name!r} was asked for, but this model has a single "
                              "readout head; leave the head out.")
        return potential
    name = default_head(potential) if name is None else name
    if name not in names:
        raise ConfigError(f"the model has no head {name!r}; its heads are {', '.join(names)}.")
    hyperparameters = {**potential.hyperparameters, "heads": [], "head": None}
    model = build_model(hyperparameters, len(potential.species))
    single = Potential(model, hyperparameters, potential.species, potential.e0s.tolist(),
                       float(potential.scale), float(potential.shift))
    single.to(device=potential.device, dtype=potential.dtype)
    state = {}
    prefix = "" if name == names[0] else f"model.extra_heads.{name}."
    source = potential.state_dict()
    for key in single.state_dict():
        inner = key[len("model."):] if key.startswith("model.") else None
        if prefix and inner is not None and inner.startswith(_HEAD_PARTS):
            state[key] = source[prefix + inner]
        else:
            state[key] = source[key]
    single.load_state_dict(state, strict=True)
    with torch.no_grad():  # exactly, not through the default dtype of the constructor
        single.scale.copy_(potential.scale)
        single.shift.copy_(potential.shift)
    single.metadata = {**potential.metadata, "head": name, "heads": names}
    return single.train(potential.training)
