"""Weight averages of a model during training: EMA and SWA.

A running average lives in a *replica* of the trained Potential, rebuilt from the
architecture registry (:meth:`mlff.models.Potential.replica`), never a ``deepcopy``: a
copied e3nn tensor product regenerates its torch.fx code with different buffers, so a
deep copy need not have the buffers of the original. Parameters and buffers are paired
by name, and a mismatch is an error that names the tensor instead of a silent misfit.
"""

from __future__ import annotations

import torch
from torch import nn

from mlff.models.potential import Potential


class WeightAverage(nn.Module):
    """An exponential (``decay`` given) or equal-weight (``decay=None``, SWA) running
    average of a Potential's parameters; buffers follow the trained model's values.

    ``module`` is the averaged Potential, ready to evaluate. The state dict holds
    ``module.*`` and ``n_averaged``, as ``torch.optim.swa_utils.AveragedModel`` does.

    With ``warmup``, the EMA's decay at the n-th update is ``min(decay, (1 + n) / (10 + n))``
    (as torch_ema's ``use_num_updates`` does): a short run (a
    fine-tuning of a few hundred steps) is not averaged with its starting weights, whose
    share would otherwise still be ``decay ** steps`` (0.99 ** 100 = 37 %) at the end.
    """

    def __init__(self, potential: Potential, decay: float | None = None,
                 warmup: bool = False) -> None:
        super().__init__()
        if decay is not None and not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.module = potential.replica()
        self.decay = decay
        self.warmup = warmup
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long,
                                                         device=potential.device))

    @torch.no_grad()
    def update_parameters(self, potential: Potential) -> None:
        """Fold the current parameters of ``potential`` (the model being trained) into
        the average and copy its buffers."""
        averaged, current = _paired(self.module.named_parameters(),
                                    potential.named_parameters(), "parameter")
        if int(self.n_averaged) == 0:
            torch._foreach_copy_(averaged, current)
        elif self.decay is not None:  # avg <- avg + (1 - decay) (p - avg)
            torch._foreach_lerp_(averaged, current, 1.0 - self.decay_now())
        else:  # avg <- avg + (p - avg) / (n + 1)
            torch._foreach_lerp_(averaged, current, 1.0 / (int(self.n_averaged) + 1))
        buffers, sources = _paired(self.module.named_buffers(), potential.named_buffers(),
                                   "buffer")
        for buffer, source in zip(buffers, sources):
            buffer.copy_(source)
        self.n_averaged += 1

    def decay_now(self) -> float:
        """Return the EMA decay of the next update (``decay``, lower while warming up)."""
        assert self.decay is not None
        if not self.warmup:
            return self.decay
        n = int(self.n_averaged)
        return min(self.decay, (1 + n) / (10 + n))


def _paired(averaged, current, kind: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The tensors of the average and the trained model, in the same order by name."""
    averaged, current = dict(averaged), dict(current)
    if averaged.keys() != current.keys():
        missing = sorted(averaged.keys() ^ current.keys())
        raise RuntimeError(f"the averaged model and the trained model differ in {kind}s "
                           f"{', '.join(missing[:5])}")
    names = list(averaged)
    for name in names:
        if averaged[name].shape != current[name].shape:
            raise RuntimeError(f"{kind} {name} has shape {tuple(current[name].shape)} in the "
                               f"trained model but {tuple(averaged[name].shape)} in its average")
    return [averaged[n] for n in names], [current[n].detach() for n in names]
