from __future__ import annotations

from typing import Any

from mtl.finetune.base import STRATEGIES, FrozenSource, Strategy


class FrozenBackbone(FrozenSource):
    """Freezes the backbone's shared layers (see FrozenSource) before training and, from epoch
    `unfreeze_at` on (if given), trains them again at `lr` × `lr_factor`."""

    def __init__(self, unfreeze_at: int | None = None, lr_factor: float = 1.0):
        super().__init__()
        self.unfreeze_at = unfreeze_at
        self.lr_factor = lr_factor

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Any) -> None:
        if epoch == self.unfreeze_at:
            lr = optimizer.param_groups[0]["lr"] * self.lr_factor
            self.unfreeze_and_add_param_group(pl_module.net.backbone, optimizer, lr=lr, initial_denom_lr=1.0)


@STRATEGIES.register("linear_probe")
class LinearProbe(Strategy):
    """Linear probing: the backbone's shared layers stay frozen (bit-identical) and in eval mode;
    only the heads (and an architecture's per-task modules) train."""

    def callbacks(self) -> list[Any]:
        return [FrozenBackbone()]
