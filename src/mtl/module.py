"""The one LightningModule every experiment kind runs: multitask, single-task (one task) and
fine-tune (weights loaded from a source, a fine-tune strategy attached) alike."""

from __future__ import annotations

from typing import Any, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from mtl.diagnostics import TaskRelations
from mtl.methods import Weighting
from mtl.models.net import MultiTaskNet
from mtl.tasks import Task

STAGES = ("train", "val", "test")
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def task_metrics(task: Task, **options: Any) -> torchmetrics.MetricCollection:
    """The task's metrics; `options` go to every torchmetrics Metric (e.g. sync_on_compute)."""
    if task.kind == "multiclass":
        return torchmetrics.MetricCollection(
            {"accuracy": torchmetrics.classification.MulticlassAccuracy(len(task.classes), average="micro", ignore_index=-1, **options)}
        )
    if task.kind == "binary":
        return torchmetrics.MetricCollection({"accuracy": torchmetrics.classification.BinaryAccuracy(ignore_index=-1, **options)})
    return torchmetrics.MetricCollection(
        {
            "mae": torchmetrics.MeanAbsoluteError(**options),
            "rmse": torchmetrics.MeanSquaredError(squared=False, **options),
            "r2": torchmetrics.R2Score(**options),
        }
    )


def task_loss(task: Task, output: torch.Tensor, target: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """The task's loss over its labelled examples (unlabelled: -1 for classes, NaN for values);
    a regression error in units of `scale` (the training labels' std)."""
    labelled = ~torch.isnan(target) if task.kind == "regression" else target >= 0
    if not labelled.any():
        return output.sum() * 0.0  # keeps the graph (and DDP) intact for a batch with no labels
    if task.kind == "multiclass":
        return F.cross_entropy(output[labelled], target[labelled])
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(output[labelled], target[labelled].float())
    return F.mse_loss(output[labelled] / scale, target[labelled] / scale)


def update_metrics(metrics: Any, tasks: Iterable[Task], outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
    """Feed a batch to each task's metrics: probabilities for binary tasks, and only labelled
    examples for regression (classification metrics skip the -1 labels themselves)."""
    for task in tasks:
        out, target = outputs[task.name].detach(), targets[task.name]
        if task.kind == "binary":
            out = torch.sigmoid(out.float())
        elif task.kind == "regression":
            keep = ~torch.isnan(target)
            out, target = out[keep].float(), target[keep]
            if len(target) == 0:
                continue
        metrics[task.name].update(out, target)


def score_of(task: Task, values: dict[str, float]) -> float:
    """The per-task number the best checkpoint is chosen by: accuracy, or R² for regression."""
    return values["r2"] if task.kind == "regression" else values["accuracy"]


class MultiTaskModule(pl.LightningModule):
    def __init__(
        self,
        net: MultiTaskNet,
        weighting: Weighting,
        optim: dict[str, Any],
        strategy: Any = None,
        meta: dict[str, Any] | None = None,
        diagnostics: bool = False,
    ):
        super().__init__()
        self.net = net
        self.weighting = weighting
        weighting.attach(net)
        self.optim = dict(optim)
        self.strategy = strategy
        self.meta = meta or {}  # what a checkpoint needs to rebuild the net (see checkpoint.py)
        self.tasks: dict[str, Task] = dict(net.tasks)
        self.metrics = nn.ModuleDict(
            # keyed "train_" etc.: a ModuleDict key may not shadow nn.Module.train. Train and val
            # metrics are all-reduced across DDP processes in compute(); the test runs on one
            # process (train._tester), while the others may still hold the process group.
            {
                f"{stage}_": nn.ModuleDict({n: task_metrics(t, sync_on_compute=stage != "test") for n, t in self.tasks.items()})
                for stage in STAGES
            }
        )
        self.automatic_optimization = not weighting.manual_backward
        self.history: list[dict[str, Any]] = []
        self.task_weights: list[dict[str, Any]] = []
        # Task-relation diagnostics (cosine, magnitude similarity, conflicts, affinity): off by default.
        self.relations = TaskRelations(list(self.tasks)) if diagnostics else None
        self.diagnostics: list[dict[str, Any]] = []
        self.test_results: dict[str, dict[str, float]] = {}
        self._epoch_losses = {name: [0.0, 0] for name in self.tasks}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x)

    # --- training -------------------------------------------------------------------------
    def losses(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            name: task_loss(task, outputs[name], targets[name], self.net.target_std(name)) for name, task in self.tasks.items()
        }

    def training_step(self, batch, batch_idx):
        x, y = batch
        outputs = self.net(x)
        losses = self.losses(outputs, y)
        self._update("train", outputs, y)
        for name, loss in losses.items():
            tally = self._epoch_losses[name]
            tally[0] += loss.detach()
            tally[1] += 1
        if self.relations is not None:
            self.relations.observe(self, x, y, losses)
        penalty = self.strategy.penalty(self) if self.strategy is not None else None
        if self.automatic_optimization:
            objective = self.weighting.combine(losses)
            return objective if penalty is None else objective + penalty
        self.weighting.backward(self, losses, penalty)
        return None

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        # Under manual optimisation, `loss` is the stack of task losses that the method passed to
        # manual_backward (scaled by Lightning's precision plugin); the method differentiates it.
        if self.automatic_optimization:
            super().backward(loss, *args, **kwargs)
        else:
            self.weighting.jacobian_backward(self.net, loss)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._update("val", self.net(x), y)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self._update("test", self.net(x), y)

    def _update(self, stage: str, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
        update_metrics(self.metrics[f"{stage}_"], self.tasks.values(), outputs, targets)

    def _compute(self, stage: str) -> tuple[dict[str, dict[str, float]], float]:
        """Compute (synchronised across processes by torchmetrics), log and reset a stage's metrics."""
        results = {}
        for name, task in self.tasks.items():
            collection = self.metrics[f"{stage}_"][name]
            values = {k: float(v) for k, v in collection.compute().items()}
            collection.reset()
            results[name] = values
            for metric, value in values.items():
                self.log(f"{stage}/{name}/{metric}", value, sync_dist=False)
        score = sum(score_of(self.tasks[n], v) for n, v in results.items()) / len(results)
        self.log(f"{stage}/score", score)
        return results, score

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            for stage_metrics in self.metrics["val_"].values():
                stage_metrics.reset()
            return
        # Epoch bookkeeping happens here, after validation and before the epoch's checkpoint is
        # written (on_train_epoch_end runs after it), so a resumed run keeps its full history.
        train, _ = self._compute("train")
        val, val_score = self._compute("val")
        mean_losses = {}
        for name, (total, count) in self._epoch_losses.items():
            # every DDP process ran as many batches (Lightning pads the training split), so the
            # mean over processes of their per-batch means is the epoch's per-batch mean
            mean = torch.as_tensor(total / max(count, 1), device=self.device)
            mean_losses[name] = float(self.trainer.strategy.reduce(mean, reduce_op="mean"))
            self.log(f"train/{name}/loss", mean_losses[name])
        self._epoch_losses = {name: [0.0, 0] for name in self.tasks}
        entry: dict[str, Any] = {"epoch": self.current_epoch}
        for stage, results in (("train", train), ("val", val)):
            for name, values in results.items():
                for metric, value in values.items():
                    entry[f"{stage}/{name}/{metric}"] = value
        entry.update({f"train/{name}/loss": v for name, v in mean_losses.items()})
        entry["val/score"] = val_score
        self.history.append(entry)
        self.task_weights.append({"epoch": self.current_epoch, **self.weighting.current_weights()})
        self.weighting.on_epoch_end(self.current_epoch, mean_losses)
        if self.relations is not None:
            self.diagnostics.append({"epoch": self.current_epoch, **self.relations.summarise(self)})

    def on_test_epoch_end(self) -> None:
        self.test_results, _ = self._compute("test")

    # --- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        lr = self.optim["lr"]
        if self.strategy is not None:
            groups = self.strategy.param_groups(self, lr)
        else:
            groups = [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]
        # A method's own parameters (UW's log-variances, GradNorm's weights) weigh the losses;
        # decaying them towards 0 would bias the weighting, so they get no weight decay.
        method = {id(p) for p in self.weighting.parameters()}
        groups = [
            part
            for group in groups
            for part in (
                {**group, "params": [p for p in group["params"] if id(p) not in method]},
                {**group, "params": [p for p in group["params"] if id(p) in method], "weight_decay": 0.0, "name": "method"},
            )
            if part["params"]
        ]
        extra = {"momentum": self.optim["momentum"]} if self.optim["name"] == "sgd" else {}
        return OPTIMIZERS[self.optim["name"]](groups, lr=lr, weight_decay=self.optim["weight_decay"], **extra)

    # --- checkpoint -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mtl"] = {
            **self.meta,
            "history": self.history,
            "task_weights": self.task_weights,
            "diagnostics": self.diagnostics,
            # RNG state, so that a resumed run continues exactly as an uninterrupted one would
            "rng": {"torch": torch.get_rng_state()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None and self.trainer.state.fn != "fit":
            return  # testing the best checkpoint must not rewind the run's history to that epoch
        saved = checkpoint.get("mtl", {})
        self.history = list(saved.get("history", []))
        self.task_weights = list(saved.get("task_weights", []))
        self.diagnostics = list(saved.get("diagnostics", []))
        if "rng" in saved:
            torch.set_rng_state(saved["rng"]["torch"])
