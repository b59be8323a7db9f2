"""Fine-tuning strategies: how a network that starts from a source's weights is trained.

A strategy is a small module (so state such as L2-SP's anchor weights is checkpointed with the
run) registered in STRATEGIES and chosen with `finetune=NAME`; it may contribute optimiser
parameter groups, Lightning callbacks and a penalty added to the training loss.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mtl.registry import Registry

STRATEGIES: Registry = Registry("fine-tune strategy", "finetune")


class FrozenSource(BaseFinetuning):
    """Base of the callbacks that freeze what came from the source: the backbone's shared layers,
    weights and batch-norm statistics. The architecture's per-task modules (MMoE gates, MTAN
    attention) start fresh like the heads, so they train. Frozen batch norms are kept in eval
    mode: Lightning's freeze alone leaves them normalising with each batch's statistics in
    training but with the source's running statistics in evaluation, so heads would be trained on
    other features than the ones they are evaluated on. Subclasses unfreeze in finetune_function."""

    def freeze_before_training(self, pl_module: Any) -> None:
        backbone = pl_module.net.backbone
        self.freeze(backbone, train_bn=False)
        self.make_trainable(backbone.task_modules)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_start(trainer, pl_module)  # unfreezes what finetune_function says
        for module in pl_module.net.backbone.modules():
            if isinstance(module, _BatchNorm):  # frozen ones (no running statistics kept) in eval
                module.train(pl_module.training and module.track_running_stats)


class Strategy(nn.Module):
    """Full fine-tuning: every parameter trains; the backbone at `backbone_lr_factor` × lr
    (discriminative learning rates, usable with every strategy)."""

    def __init__(self, net: nn.Module, max_epochs: int, backbone_lr_factor: float = 1.0):
        super().__init__()
        self.max_epochs = max_epochs
        self.backbone_lr_factor = backbone_lr_factor

    def param_groups(self, module: Any, lr: float) -> list[dict[str, Any]]:
        """Trainable parameters: the backbone's at lr × factor, everything else at lr. Frozen
        parameters are left out; callbacks that unfreeze them add their own group."""
        backbone = {id(p) for p in module.net.shared_parameters()}
        trainable = [p for p in module.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if id(p) in backbone], "lr": lr * self.backbone_lr_factor, "name": "backbone"},
            {"params": [p for p in trainable if id(p) not in backbone], "lr": lr, "name": "heads"},
        ]
        return [g for g in groups if g["params"]]

    def callbacks(self) -> list[Any]:
        return []

    def penalty(self, module: Any) -> torch.Tensor | None:
        return None


STRATEGIES.register("full")(Strategy)
