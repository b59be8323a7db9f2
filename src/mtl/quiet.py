"""Keep the terminal for results: drop Lightning's adverts and notices that do not apply, in this
process and in DDP workers started by spawning (they begin with Python's default filters)."""

from __future__ import annotations

import logging
import warnings

import pytorch_lightning as pl

NOTICES = (
    ".*litlogger.*",
    ".*LeafSpec.*",
    ".*smaller than the logging interval.*",
    ".*does not have many workers.*",
    # epoch-level values are all-reduced before they are logged (torchmetrics, strategy.reduce)
    ".*when logging on epoch level in distributed setting.*",
    # the test stage restores the best checkpoint into a fresh one-device Trainer on purpose
    ".*callbacks used to create the checkpoint need to be provided.*",
)


def quiet_lightning() -> None:
    for pattern in NOTICES:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)


class Quiet(pl.Callback):
    """Applies quiet_lightning() where the Trainer runs, spawned workers included."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        quiet_lightning()
