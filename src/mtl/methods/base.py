"""How per-task losses become one training signal.

A method is a small `Weighting` module (so its state, e.g. learned log-variances, lives in the
checkpoint) registered by name in METHODS and chosen with `method=NAME`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl.registry import Registry

METHODS: Registry = Registry("method", "method")


class Weighting(nn.Module):
    """Loss weighting: the objective is a (possibly learned or adaptive) weighted sum of losses.

    Methods that instead aggregate per-task gradients set `manual_backward = True` and
    override `backward` (the module then switches Lightning to manual optimisation).
    """

    manual_backward = False
    method_name = ""  # the registry name it was built under (set by build_method), for messages

    def __init__(self, task_names: list[str]):
        super().__init__()
        self.task_names = list(task_names)

    def attach(self, net: nn.Module) -> None:
        """Called once with the network, for methods that look at its parameters (GradNorm)."""

    def check_trainer(self, trainer_cfg: Any) -> None:
        """Raise UserError for trainer settings the method cannot honour (called before a run)."""

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, module: Any, losses: dict[str, torch.Tensor], penalty: torch.Tensor | None) -> None:
        """Manual optimisation: one optimiser step from the task losses (and the strategy's penalty)."""
        raise NotImplementedError

    def current_weights(self) -> dict[str, float]:
        """The weights in effect, for the run record (one entry per task)."""
        return {name: 1.0 for name in self.task_names}

    def on_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        """Adaptive methods (e.g. DWA) update their state from the epoch's mean task losses."""


def stacked(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack(list(losses.values()))
