from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import BaseFinetuning

from mtl.finetune.base import STRATEGIES, Strategy


class FrozenBackbone(BaseFinetuning):
    """Freezes the backbone (parameters and batch-norm statistics) before training and, from
    epoch `unfreeze_at` on (if given), trains it again at `lr` × `lr_factor`."""

    def __init__(self, unfreeze_at: int | None = None, lr_factor: float = 1.0):
        super().__init__()
        self.unfreeze_at = unfreeze_at
        self.lr_factor = lr_factor

    def freeze_before_training(self, pl_module: Any) -> None:
        self.freeze(pl_module.net.backbone, train_bn=False)

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Any) -> None:
        if epoch == self.unfreeze_at:
            lr = optimizer.param_groups[0]["lr"] * self.lr_factor
            self.unfreeze_and_add_param_group(pl_module.net.backbone, optimizer, lr=lr, initial_denom_lr=1.0)


@STRATEGIES.register("linear_probe")
class LinearProbe(Strategy):
    """Linear probing: the backbone stays frozen (bit-identical); only the heads train."""

    def callbacks(self) -> list[Any]:
        return [FrozenBackbone()]
