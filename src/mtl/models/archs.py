"""Multitask architectures: how tasks share the backbone. Each takes a backbone factory and the
task names and returns a module mapping input -> {task: features}, with `out_features`."""

from __future__ import annotations

from typing import Callable

from torch import nn

from mtl.registry import Registry

ARCHS: Registry = Registry("architecture", "arch")


@ARCHS.register("hps")
class HardSharing(nn.Module):
    """Hard parameter sharing (Caruana 1997): one backbone computes the features of every task."""

    def __init__(self, make_backbone: Callable[[], nn.Module], task_names: list[str]):
        super().__init__()
        self.trunk = make_backbone()
        self.task_names = list(task_names)
        self.blocks = self.trunk.blocks
        self.out_features = self.trunk.out_features

    def forward(self, x):
        features = self.trunk(x)
        return {name: features for name in self.task_names}
