"""The data as Lightning's fit loop sees it: training batches as always, and validation batches
that stay exact when training runs on several processes (DDP)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from mtl.data.build import DataBundle


class FitData(pl.LightningDataModule):
    def __init__(self, data: DataBundle, loader: Any, seed: int):
        super().__init__()
        self.data, self.seed = data, seed
        self.settings = {"batch_size": loader.batch_size, "num_workers": loader.num_workers, "pin_memory": loader.pin_memory}

    def train_dataloader(self) -> DataLoader:
        return self.data.loader("train", seed=self.seed, **self.settings)

    def val_dataloader(self) -> DataLoader:
        sampler = None
        if self.trainer.world_size > 1:
            # Lightning's default DistributedSampler pads the split with repeated examples so that
            # every process gets as many; this one hands each example to exactly one process, so
            # the all-reduced metrics are those of the split itself.
            split = self.data.splits["val"]
            sampler = UnrepeatedDistributedSampler(split, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, shuffle=False)
        return self.data.loader("val", seed=self.seed, sampler=sampler, **self.settings)
