"""A weight-space anchor for fine-tuning (L2-SP): a penalty on moving away from the start.

With ``finetune.anchor`` λ > 0 the training loss gains the term

    λ · Σ_i ||θ_i − θ_i⁰||²

summed over every trainable parameter θ_i (all their entries; for a parameter that
gained entries for new elements, only its pretrained entries), where θ⁰ are the weights
as fine-tuning starts: the pretrained model's. Unlike replay it needs no structures and
costs one pass over the weights per step; it resists every move away from the
foundation, where replay resists only those that change the replayed predictions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mlff.errors import ConfigError
from mlff.models.potential import Potential


class WeightAnchor:
    """The L2-SP penalty of ``potential``'s trainable parameters against their current values.

    Args:
        potential: the model as fine-tuning starts (its device and dtype are used).
        strength: λ, in loss units per squared weight unit.
        grown: parameter name -> bool mask of the entries added for new elements (not
            anchored), as :func:`mlff.train.finetune.potential_from_pretrained` grows them.

    Raises:
        ConfigError: no trainable pretrained entry is left to anchor.
    """

    def __init__(self, potential: Potential, strength: float,
                 grown: Mapping[str, torch.Tensor] | None = None) -> None:
        self.strength = strength
        self.parameters: list[torch.Tensor] = []
        self.references: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []
        grown = grown or {}
        for name, parameter in potential.named_parameters():
            if not parameter.requires_grad:
                continue
            mask = grown.get(name)
            keep = None if mask is None else (~mask.bool()).to(parameter)
            if keep is not None and not bool(keep.any()):
                continue
            self.parameters.append(parameter)
            self.references.append(parameter.detach().clone())
            self.masks.append(keep)
        if not self.parameters:
            raise ConfigError(
                f"finetune.anchor {strength:g} has nothing to anchor: every pretrained "
                "parameter is frozen (finetune.freeze), so the anchor would have no effect. "
                "Remove finetune.anchor or freeze fewer prefixes.")

    @property
    def num_anchored(self) -> int:
        """Number of anchored weight entries."""
        return sum(p.numel() if m is None else int(m.count_nonzero())
                   for p, m in zip(self.parameters, self.masks, strict=True))

    def squared_distance(self) -> torch.Tensor:
        """Σ ||θ − θ⁰||² over the anchored entries (a differentiable scalar)."""
        total = self.parameters[0].new_zeros(())
        for parameter, reference, mask in zip(self.parameters, self.references, self.masks,
                                              strict=True):
            difference = parameter - reference
            if mask is not None:
                difference = difference * mask
            total = total + difference.pow(2).sum()
        return total

    def penalty(self) -> torch.Tensor:
        """λ · Σ ||θ − θ⁰||² (loss units)."""
        return self.strength * self.squared_distance()


def anchor_from_config(potential: Potential, strength: float | None,
                       grown: Mapping[str, torch.Tensor] | None = None) -> WeightAnchor | None:
    """A :class:`WeightAnchor` for ``finetune.anchor`` (``None`` when it is 0 or unset)."""
    if not strength:
        return None
    return WeightAnchor(potential, strength, grown)
