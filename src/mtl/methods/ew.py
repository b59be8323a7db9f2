from __future__ import annotations

import torch

from mtl.methods.base import METHODS, Weighting, stacked


@METHODS.register("ew")
class EqualWeighting(Weighting):
    """Equal weighting: the plain sum of the task losses (the usual multitask baseline)."""

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return stacked(losses).sum()
