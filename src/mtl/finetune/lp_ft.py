from __future__ import annotations

from typing import Any

from mtl.finetune.base import STRATEGIES, Strategy
from mtl.finetune.linear_probe import FrozenBackbone


@STRATEGIES.register("lp_ft")
class LinearProbeThenFinetune(Strategy):
    """LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features"): train the heads
    on a frozen backbone first, then fine-tune everything, so that the randomly initialised heads
    do not distort the source features early on."""

    def __init__(self, net, max_epochs: int, backbone_lr_factor: float = 1.0, probe_epochs: int | None = None):
        super().__init__(net, max_epochs, backbone_lr_factor)
        self.probe_epochs = max(1, max_epochs // 2) if probe_epochs is None else probe_epochs

    def callbacks(self) -> list[Any]:
        return [FrozenBackbone(unfreeze_at=self.probe_epochs, lr_factor=self.backbone_lr_factor)]
