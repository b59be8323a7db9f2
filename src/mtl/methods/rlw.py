from __future__ import annotations

import torch

from mtl.methods.base import METHODS, Weighting, stacked


@METHODS.register("rlw")
class RandomLossWeighting(Weighting):
    """Random loss weighting (Lin et al. 2021, "Reasonable Effectiveness of Random Weighting: A
    Litmus Test for Multi-Task Learning"): each step, weights softmax(z), z ~ N(0, I). The weights
    recorded per epoch are the mean of those drawn in it."""

    def __init__(self, task_names: list[str]):
        super().__init__(task_names)
        self._drawn: list[torch.Tensor] = []

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        values = stacked(losses)
        weights = torch.softmax(torch.randn(len(values), device=values.device, dtype=values.dtype), dim=0)
        self._drawn.append(weights.detach())
        return (weights * values).sum()

    def current_weights(self) -> dict[str, float]:
        if not self._drawn:
            return {name: 1.0 / len(self.task_names) for name in self.task_names}
        return dict(zip(self.task_names, torch.stack(self._drawn).mean(0).tolist()))

    def on_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        self._drawn = []
