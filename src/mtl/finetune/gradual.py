from __future__ import annotations

from typing import Any

from mtl.finetune.base import STRATEGIES, FrozenSource, Strategy


class UnfreezeTopDown(FrozenSource):
    """Freezes the backbone's shared layers (see FrozenSource), then every `every` epochs
    unfreezes its next block from the top (the output end), each at lr × lr_factor; the last
    step also unfreezes anything outside the blocks."""

    def __init__(self, every: int, lr_factor: float):
        super().__init__()
        self.every = every
        self.lr_factor = lr_factor

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Any) -> None:
        if epoch == 0 or epoch % self.every:
            return
        blocks = list(pl_module.net.backbone.blocks)
        step = epoch // self.every
        if step > len(blocks):
            return
        lr = optimizer.param_groups[0]["lr"] * self.lr_factor
        self.unfreeze_and_add_param_group(blocks[-step], optimizer, lr=lr, initial_denom_lr=1.0)
        if step == len(blocks):
            self.unfreeze_and_add_param_group(pl_module.net.backbone, optimizer, lr=lr, initial_denom_lr=1.0)


@STRATEGIES.register("gradual")
class GradualUnfreezing(Strategy):
    """Gradual unfreezing (Howard & Ruder 2018, ULMFiT): heads first, then the backbone one
    block at a time from the top, every `unfreeze_every` epochs."""

    def __init__(self, net, max_epochs: int, backbone_lr_factor: float = 1.0, unfreeze_every: int = 1):
        super().__init__(net, max_epochs, backbone_lr_factor)
        self.unfreeze_every = unfreeze_every

    def callbacks(self) -> list[Any]:
        return [UnfreezeTopDown(self.unfreeze_every, self.backbone_lr_factor)]
