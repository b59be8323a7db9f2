from __future__ import annotations

from typing import Any

import torch

from mtl.finetune.base import STRATEGIES, Strategy


@STRATEGIES.register("l2sp")
class L2SP(Strategy):
    """L2-SP (Li et al. 2018, "Explicit Inductive Bias for Transfer Learning with Convolutional
    Networks"): full fine-tuning with a penalty alpha/2 · ||w − w_source||² on the transferred
    backbone weights, pulling them towards the source instead of towards zero."""

    def __init__(self, net, max_epochs: int, backbone_lr_factor: float = 1.0, alpha: float = 0.01):
        super().__init__(net, max_epochs, backbone_lr_factor)
        self.alpha = alpha
        self.names = [name.replace(".", "__") for name, _ in net.backbone.named_parameters()]
        # Buffers, so the anchor is saved with the run and a resumed run pulls to the same point.
        # Built after the source weights are loaded into `net`.
        for name, p in zip(self.names, net.backbone.parameters()):
            self.register_buffer(name, p.detach().clone())

    def penalty(self, module: Any) -> torch.Tensor:
        total = sum(
            (p - getattr(self, name)).pow(2).sum() for name, p in zip(self.names, module.net.backbone.parameters())
        )
        return 0.5 * self.alpha * total
