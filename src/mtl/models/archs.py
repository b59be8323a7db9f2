"""Multitask architectures: how tasks share the backbone.

Each takes a backbone factory and the task names and returns a module mapping input ->
{task: features}, with
- `out_features`: the width of each task's features (what a head takes);
- `blocks`: a ModuleList of stages from input to output (gradual unfreezing walks it top-down);
- `task_modules`: a ModuleDict of the modules only one task's output depends on (may be empty);
- `copies`: the names of its submodules that are whole backbones (fine-tuning from a source of
  another architecture initialises them from the source's backbone).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from mtl.errors import UserError
from mtl.registry import Registry

ARCHS: Registry = Registry("architecture", "arch")


@ARCHS.register("hps")
class HardSharing(nn.Module):
    """Hard parameter sharing (Caruana 1997): one backbone computes the features of every task."""

    copies = ("trunk",)

    def __init__(self, make_backbone: Callable[[], nn.Module], task_names: list[str]):
        super().__init__()
        self.trunk = make_backbone()
        self.task_names = list(task_names)
        self.blocks = self.trunk.blocks
        self.task_modules = nn.ModuleDict()
        self.out_features = self.trunk.out_features

    def forward(self, x):
        features = self.trunk(x)
        return {name: features for name in self.task_names}


@ARCHS.register("mmoe")
class MultiGateMixtureOfExperts(nn.Module):
    """MMoE (Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with Multi-gate
    Mixture-of-Experts"): `experts` backbones; each task mixes their features with its own softmax
    gate computed from the input."""

    def __init__(self, make_backbone: Callable[[], nn.Module], task_names: list[str], experts: int = 3):
        super().__init__()
        if experts < 1:
            raise UserError(f"arch.experts must be at least 1, got {experts}")
        self.experts = nn.ModuleList(make_backbone() for _ in range(experts))
        self.copies = tuple(f"experts.{i}" for i in range(experts))
        first = self.experts[0]
        self.blocks = nn.ModuleList(
            nn.ModuleList(expert.blocks[i] for expert in self.experts) for i in range(len(first.blocks))
        )
        inputs = math.prod(first.input_shape)
        self.task_modules = nn.ModuleDict({name: nn.Linear(inputs, experts) for name in task_names})
        self.out_features = first.out_features

    def forward(self, x):
        expert_features = torch.stack([expert(x) for expert in self.experts], dim=1)  # N × E × F
        flat = x.flatten(1)
        return {
            name: (torch.softmax(gate(flat), dim=-1).unsqueeze(-1) * expert_features).sum(1)
            for name, gate in self.task_modules.items()
        }


class CrossStitchUnit(nn.Module):
    """Learned per-channel linear combinations of the tasks' activations: x̃_t = Σ_s α_ts ⊙ x_s."""

    def __init__(self, n_tasks: int, channels: int, keep: float):
        super().__init__()
        other = (1.0 - keep) / (n_tasks - 1) if n_tasks > 1 else 0.0
        alpha = torch.full((n_tasks, n_tasks), other)
        alpha.fill_diagonal_(keep if n_tasks > 1 else 1.0)
        self.alpha = nn.Parameter(alpha.unsqueeze(-1).repeat(1, 1, channels))  # T × T × C

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked = torch.stack(xs)  # T × N × C (× H × W)
        shape = (*self.alpha.shape, *([1] * (stacked.dim() - 3)))
        alpha = self.alpha.view(shape[0], shape[1], 1, shape[2], *shape[3:])  # T × T × 1 × C (× 1 × 1)
        return list((alpha * stacked.unsqueeze(0)).sum(1))


@ARCHS.register("cross_stitch")
class CrossStitch(nn.Module):
    """Cross-stitch networks (Misra et al. 2016, "Cross-stitch Networks for Multi-task
    Learning"): one backbone column per task, their activations mixed after every block by
    learned cross-stitch units (initialised to keep `keep` of a task's own activation)."""

    def __init__(self, make_backbone: Callable[[], nn.Module], task_names: list[str], keep: float = 0.9):
        super().__init__()
        self.task_names = list(task_names)
        self.columns = nn.ModuleDict({name: make_backbone() for name in self.task_names})
        self.copies = tuple(f"columns.{name}" for name in self.task_names)
        first = self.columns[self.task_names[0]]
        self.stitches = nn.ModuleList(CrossStitchUnit(len(self.task_names), c, keep) for c in first.block_channels)
        self.blocks = nn.ModuleList(
            nn.ModuleList([*(column.blocks[i] for column in self.columns.values()), self.stitches[i]])
            for i in range(len(first.blocks))
        )
        # Every column feeds every task through the stitches: nothing here belongs to one task.
        self.task_modules = nn.ModuleDict()
        self.out_features = first.out_features

    def forward(self, x):
        columns = list(self.columns.values())
        xs = [column.stem(x) for column in columns]
        for i, stitch in enumerate(self.stitches):
            xs = stitch([column.blocks[i](h) for column, h in zip(columns, xs)])
        return {name: column.pool(h) for name, column, h in zip(self.task_names, columns, xs)}


class TaskAttention(nn.Module):
    """One task's attention over one shared block (MTAN): a mask from the block's output and the
    task's previous attended features, applied elementwise to the block's output."""

    def __init__(self, channels: int, previous: int | None, spatial: bool):
        super().__init__()

        def dense(a: int, b: int) -> nn.Module:
            return nn.Conv2d(a, b, 1, bias=False) if spatial else nn.Linear(a, b, bias=False)

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if spatial else nn.BatchNorm1d(c)

        inputs = channels if previous is None else 2 * channels
        self.mask = nn.Sequential(
            dense(inputs, channels), norm(channels), nn.ReLU(inplace=True),
            dense(channels, channels), norm(channels), nn.Sigmoid(),
        )  # fmt: skip
        if previous is None:
            self.carry = None
        elif spatial:  # brings the previous attended features to this block's shape
            self.carry = nn.Sequential(
                nn.Conv2d(previous, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True), nn.MaxPool2d(2),
            )  # fmt: skip
        else:
            self.carry = nn.Sequential(nn.Linear(previous, channels), nn.ReLU(inplace=True))

    def forward(self, shared: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        inputs = shared if previous is None else torch.cat([shared, self.carry(previous)], dim=1)
        return self.mask(inputs) * shared


@ARCHS.register("mtan")
class MultiTaskAttention(nn.Module):
    """MTAN (Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with Attention"): one
    shared backbone; each task attends to the output of every block through its own soft masks,
    carrying its attended features from block to block."""

    copies = ("trunk",)

    def __init__(self, make_backbone: Callable[[], nn.Module], task_names: list[str]):
        super().__init__()
        self.trunk = make_backbone()
        channels = self.trunk.block_channels
        spatial = self.trunk.spatial
        self.task_modules = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    TaskAttention(c, channels[i - 1] if i else None, spatial) for i, c in enumerate(channels)
                )
                for name in task_names
            }
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList([block, *(attention[i] for attention in self.task_modules.values())])
            for i, block in enumerate(self.trunk.blocks)
        )
        self.out_features = self.trunk.out_features

    def forward(self, x):
        h = self.trunk.stem(x)
        attended: dict[str, torch.Tensor | None] = {name: None for name in self.task_modules}
        for i, block in enumerate(self.trunk.blocks):
            h = block(h)
            for name, attention in self.task_modules.items():
                attended[name] = attention[i](h, attended[name])
        return {name: self.trunk.pool(a) for name, a in attended.items()}
