"""Guards against training runs that silently do nothing.

Users of other fine-tuning codes report runs that train for hours while a setting has
no effect: every parameter frozen, a loss whose weights or labels make it exactly 0, a
replay set that ends up empty. These checks turn such runs into errors (or, where the
run can still be meaningful, warnings) before or right after the first epoch.
"""

from __future__ import annotations

import warnings

from mlff.errors import ConfigError, MLFFError
from mlff.models.potential import Potential
from mlff.train.config import LossConfig, TrainConfig


class ZeroLossError(MLFFError):
    """The training loss is exactly 0, so no parameter can change."""


def check_trainable(potential: Potential, config: TrainConfig) -> None:
    """Raise if no parameter of ``potential`` would be trained.

    Raises:
        ConfigError: every parameter is frozen (``finetune.freeze``).
    """
    if not any(p.requires_grad for p in potential.parameters()):
        frozen = config.finetune.freeze if config.finetune is not None else []
        raise ConfigError(
            f"finetune.freeze {frozen} freezes every parameter of the model, so training "
            "would change nothing. Freeze fewer prefixes (e.g. only the embedding and the "
            "first interaction block)."
        )


def check_loss_weights(loss: LossConfig, where: str = "training.loss") -> None:
    """Raise if every weight of ``loss`` is 0.

    Raises:
        ConfigError: naming the section.
    """
    if loss.energy_weight == 0 and loss.forces_weight == 0 and loss.stress_weight == 0:
        raise ConfigError(
            f"{where}: energy_weight, forces_weight and stress_weight are all 0, so the loss "
            "is 0 whatever the model predicts. Give at least one a positive weight."
        )


def check_first_epoch(parts: dict[str, float], loss: LossConfig, epoch: int,
                      replay_added: int = 0) -> None:
    """Check the mean loss parts of the first training epoch.

    Args:
        parts: the trainer's epoch means (``loss`` and one unweighted term per loss part).
        loss: the weights in force.
        epoch: the 1-based epoch, for the message.
        replay_added: number of replay structures in the training set.

    Raises:
        ZeroLossError: the training loss is exactly 0.

    Warns:
        UserWarning: a term with a positive weight read exactly 0 over the whole epoch (its
        labels are missing everywhere or equal the predictions: the weight has no effect).
    """
    if parts.get("loss", 1.0) == 0.0:
        hint = (" With finetune.replay alone the labels are the model's own predictions: "
                "the training data must carry reference labels too." if replay_added else "")
        raise ZeroLossError(
            f"the training loss is exactly 0 in epoch {epoch}: no parameter can change. Check "
            "that the training structures carry the labels the loss weights ask for (energy, "
            f"forces, stress) and that those weights are positive.{hint}"
        )
    weights = {"energy": loss.energy_weight, "forces": loss.forces_weight,
               "stress": loss.stress_weight}
    silent = [name for name, weight in weights.items()
              if weight > 0 and parts.get(name, None) == 0.0]
    if silent:
        warnings.warn(
            f"the {', '.join(silent)} term(s) of the loss read exactly 0 over epoch {epoch} "
            f"although weighted; their weights have no effect (no structure carries these "
            "labels, or the labels equal the predictions).", UserWarning, stacklevel=2)


# below this share of the data loss, an anchor's pull is lost in the noise of the data terms
ANCHOR_NEGLIGIBLE = 1e-4


def check_anchor_effect(parts: dict[str, float], strength: float, epoch: int) -> None:
    """Warn when the ``finetune.anchor`` term was negligible in the last epoch.

    Args:
        parts: the trainer's epoch means, with the anchor term under ``"anchor"`` and the
            whole loss (data terms plus anchor) under ``"loss"``.
        strength: the anchor λ, for the message.
        epoch: the 1-based epoch, for the message.

    Warns:
        UserWarning: the anchor term was below :data:`ANCHOR_NEGLIGIBLE` of the data loss,
        so the weights moved as they would have without it.
    """
    anchor = parts.get("anchor")
    if anchor is None:
        return
    data = parts.get("loss", 0.0) - anchor
    if data > 0 and anchor < ANCHOR_NEGLIGIBLE * data:
        warnings.warn(
            f"finetune.anchor {strength:g} had no measurable effect: its term was "
            f"{anchor / data:.1e} of the data loss in epoch {epoch} (the weights moved as "
            "they would have without it). Raise it by orders of magnitude (the term is "
            "anchor * the sum of squared weight changes) or remove it.", UserWarning,
            stacklevel=2)
