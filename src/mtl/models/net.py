"""The one network every experiment kind trains: an architecture over a backbone, one head per
task, and the input normalisation it was trained with (so a checkpoint is self-contained)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl.models.archs import ARCHS
from mtl.models.backbones import BACKBONES
from mtl.tasks import Task


def make_head(in_features: int, out_features: int, hidden: int = 0, dropout: float = 0.0) -> nn.Module:
    if hidden:
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_features)
        )
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))


class Standardised(nn.Module):
    """The end of a regression head: the layers before it predict the standardised target (mean 0,
    std 1 on the training split), this maps it back to the target's own units. A target in the
    hundreds then starts near its mean, and its loss (taken in standardised units) weighs like
    any other task's in the combined objective."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class MultiTaskNet(nn.Module):
    """`backbone` (shared parameters, whatever the architecture) and `heads` (one per task)."""

    def __init__(
        self,
        tasks: list[Task],
        input_shape: tuple[int, ...],
        backbone: dict[str, Any],
        head: dict[str, Any],
        arch: dict[str, Any],
    ):
        super().__init__()
        backbone = dict(backbone)
        make_backbone = BACKBONES.get(backbone.pop("name"))
        arch = dict(arch)
        self.arch_name = arch.pop("name")
        self.backbone = ARCHS.get(self.arch_name)(
            lambda: make_backbone(tuple(input_shape), **backbone), [t.name for t in tasks], **arch
        )
        self.heads = nn.ModuleDict(
            {t.name: make_head(self.backbone.out_features, t.num_outputs, **head) for t in tasks}
        )
        for t in tasks:
            if t.kind == "regression":
                self.heads[t.name].append(Standardised())
        self.tasks = {t.name: t for t in tasks}
        self.is_image = len(input_shape) == 3
        channels = input_shape[0] if self.is_image else input_shape[-1]
        self.register_buffer("input_mean", torch.zeros(channels))
        self.register_buffer("input_std", torch.ones(channels))

    def task_parameters(self, task: str | None = None) -> list[nn.Parameter]:
        """Parameters only `task`'s output depends on (all tasks' when None): its head, and the
        architecture's per-task modules (e.g. MMoE gates, MTAN attention)."""
        names = [task] if task is not None else list(self.heads)
        modules = [self.heads[n] for n in names]
        modules += [self.backbone.task_modules[n] for n in names if n in self.backbone.task_modules]
        return [p for m in modules for p in m.parameters()]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters more than one task's output depends on: what multitask methods balance."""
        specific = {id(p) for p in self.task_parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in specific]

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.input_mean.copy_(mean)
        self.input_std.copy_(std.clamp_min(1e-6))

    def set_target_stats(self, stats: dict[str, tuple[float, float]]) -> None:
        """Mean and std of each regression task's training labels."""
        for name, (mean, std) in stats.items():
            self.heads[name][-1].mean.fill_(mean)
            self.heads[name][-1].std.fill_(std if std > 1e-12 else 1.0)  # a constant target: plain units

    def target_std(self, name: str) -> torch.Tensor | float:
        """The unit a task's loss is measured in: its training std (regression), else 1."""
        return self.heads[name][-1].std if self.tasks[name].kind == "regression" else 1.0

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC images -> normalised float NCHW in channels_last memory (a free permute:
        NHWC storage *is* channels_last, which is markedly faster for convolutions on CPU)."""
        if self.is_image:
            if x.dtype == torch.uint8:
                x = x.permute(0, 3, 1, 2).float().div_(255)
            mean, std = self.input_mean.view(1, -1, 1, 1), self.input_std.view(1, -1, 1, 1)
        else:
            mean, std = self.input_mean, self.input_std
        return (x - mean) / std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(self.prepare(x))
        out = {}
        for name, head in self.heads.items():
            y = head(features[name])
            out[name] = y if self.tasks[name].kind == "multiclass" else y.squeeze(-1)
        return out
