from __future__ import annotations

import math

import torch

from mtl.methods.base import METHODS, Weighting, stacked


@METHODS.register("dwa")
class DynamicWeightAverage(Weighting):
    """Dynamic weight average (Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with
    Attention"): w_t = K·softmax_t(r_t / T) with r_t = L_t(e−1) / L_t(e−2), the ratio of the task's
    mean training loss over the last two epochs; uniform weights for the first two epochs.

    Written here rather than taken from torchjd's DWA scalarizer: that one keeps its loss history
    in plain attributes a checkpoint does not carry, and the module already has the epoch means.
    """

    def __init__(self, task_names: list[str], temperature: float = 2.0):
        super().__init__(task_names)
        if not temperature > 0:
            from mtl.errors import UserError

            raise UserError(f"method.temperature must be > 0, got {temperature}")
        self.temperature = temperature
        # The mean losses of the last two epochs (older first); a buffer, so resume keeps them.
        self.register_buffer("previous", torch.full((2, len(self.task_names)), math.nan))

    def weights(self) -> torch.Tensor:
        if torch.isnan(self.previous).any():
            return torch.ones(len(self.task_names), device=self.previous.device)
        rates = self.previous[1] / self.previous[0].clamp_min(1e-12)
        return len(self.task_names) * torch.softmax(rates / self.temperature, dim=0)

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        values = stacked(losses)
        return (self.weights().to(values.dtype) * values).sum()

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.weights().tolist()))

    def on_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        latest = torch.tensor([mean_losses[name] for name in self.task_names], device=self.previous.device)
        self.previous.copy_(torch.stack([self.previous[1], latest]))
