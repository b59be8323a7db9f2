from __future__ import annotations

import torch
from torchjd.scalarization import UW

from mtl.methods.base import METHODS, Weighting, stacked


@METHODS.register("uw")
class UncertaintyWeighting(Weighting):
    """Uncertainty weighting (Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty
    to Weigh Losses for Scene Geometry and Semantics"): Σ ½·e^(−s_t)·L_t + ½·s_t, the
    log-variances s_t = log σ_t² learned with the network (torchjd's UW scalarizer). The weight
    in effect for task t is ½·e^(−s_t)."""

    def __init__(self, task_names: list[str]):
        super().__init__(task_names)
        self.scalarizer = UW(len(self.task_names))

    @property
    def log_variances(self) -> torch.Tensor:
        return self.scalarizer.log_var

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scalarizer(stacked(losses))

    def current_weights(self) -> dict[str, float]:
        weights = 0.5 * torch.exp(-self.log_variances.detach())
        return dict(zip(self.task_names, weights.tolist()))
