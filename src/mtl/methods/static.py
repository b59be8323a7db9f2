from __future__ import annotations

from typing import Any

import torch

from mtl.errors import UserError
from mtl.methods.base import METHODS, Weighting, stacked


@METHODS.register("static")
class StaticWeighting(Weighting):
    """Fixed per-task weights: Σ w_t · L_t, with w_t from `method.weights` (1 for a task not named),
    e.g. method=static +method.weights.fruit=2.0."""

    def __init__(self, task_names: list[str], weights: dict[str, Any] | None = None):
        super().__init__(task_names)
        weights = dict(weights or {})
        for name, value in weights.items():
            if name not in self.task_names:
                raise UserError(
                    f"method.weights names '{name}', which is not a task of this run "
                    f"({', '.join(self.task_names)}); name only the tasks being trained"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise UserError(f"method.weights.{name} must be a number ≥ 0, got {value!r}")
        values = [float(weights.get(name, 1.0)) for name in self.task_names]
        self.register_buffer("weights", torch.tensor(values), persistent=False)

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return (self.weights * stacked(losses)).sum()

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.weights.tolist()))
