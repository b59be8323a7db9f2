"""Backbones: input -> feature vector, as `pool(blocks(stem(x)))`. Each exposes `stem`, `blocks`
(ordered from input to output, so fine-tune strategies can freeze or unfreeze them block by
block, and block-wise architectures can work between them), `pool`, the width of each block's
output (`block_channels`), whether those outputs are feature maps (`spatial`) and
`out_features`."""

from __future__ import annotations

import math

from torch import nn

from mtl.registry import Registry

BACKBONES: Registry = Registry("backbone", "model.backbone.name")


@BACKBONES.register("cnn")
class SmallCNN(nn.Module):
    """`blocks` × (3×3 conv, batch norm, ReLU, 2×2 max-pool), channels doubling, then global
    average pooling."""

    def __init__(self, input_shape: tuple[int, ...], width: int = 32, blocks: int = 3):
        super().__init__()
        if len(input_shape) != 3:
            from mtl.errors import UserError

            raise UserError(f"the cnn backbone needs images (C, H, W), got input shape {input_shape}; use model=mlp")
        self.input_shape = tuple(input_shape)
        channels = [input_shape[0]] + [width * 2**i for i in range(blocks)]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )
            for c_in, c_out in zip(channels, channels[1:])
        )
        self.stem = nn.Identity()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.block_channels = channels[1:]
        self.spatial = True
        self.out_features = channels[-1]

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.pool(x)


@BACKBONES.register("mlp")
class MLP(nn.Module):
    """Fully connected layers with ReLU over flattened input (tabular features or tiny images)."""

    def __init__(self, input_shape: tuple[int, ...], hidden: list[int] = (256, 128), dropout: float = 0.0):
        super().__init__()
        self.input_shape = tuple(input_shape)
        sizes = [math.prod(input_shape), *hidden]
        self.stem = nn.Flatten()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU(inplace=True), nn.Dropout(dropout))
            for a, b in zip(sizes, sizes[1:])
        )
        self.pool = nn.Identity()
        self.block_channels = sizes[1:]
        self.spatial = False
        self.out_features = sizes[-1]

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x
