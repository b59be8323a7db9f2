"""`mtl data check`: what a data set holds, as the training run will see it.

Building the data set is the check (the same code `mtl run` uses first), so a data set that
passes here trains, and one that fails here fails `mtl run` with the same messages.
"""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Group
from rich.table import Table

from mtl.data.build import SPLITS, DataBundle

SHOWN_CLASSES = 8


def summary(data: DataBundle) -> Group:
    """The data set at a glance: where it comes from, its splits, and per task its classes,
    labelled counts and balance."""
    sizes = " · ".join(f"{name} {len(data.splits[name])}" for name in SPLITS)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in data.facts.items():
        facts.add_row(key, value)
    facts.add_row("splits", sizes)
    facts.add_row("input", _input(data))

    tasks = Table(title="tasks", title_justify="left")
    for column in ("task", "kind", "classes", "labelled (train / val / test)", "balance (train)"):
        tasks.add_column(column)
    for task in data.tasks:
        labelled = " / ".join(str(_labelled(data.splits[s].y[task.name], task.kind)) for s in SPLITS)
        classes = "—" if task.kind == "regression" else str(len(task.classes))
        tasks.add_row(task.name, task.kind, classes, labelled, _balance(data.splits["train"].y[task.name], task))
    return Group(f"[bold]data '{data.name}'[/]: no problems found", facts, tasks)


def _input(data: DataBundle) -> str:
    shape = data.input_shape
    if len(shape) == 3:
        return f"images, {shape[0]} channel{'s' if shape[0] > 1 else ''} × {shape[1]}×{shape[2]}"
    return f"{shape[0]} features"


def _labelled(y: torch.Tensor, kind: str) -> int:
    return int((~torch.isnan(y) if kind == "regression" else y >= 0).sum())


def _balance(y: torch.Tensor, task: Any) -> str:
    if task.kind == "regression":
        values = y[~torch.isnan(y)].double()
        if len(values) == 0:
            return "—"
        return f"mean {values.mean():.4g} ± {values.std():.3g}, range {values.min():.4g} to {values.max():.4g}"
    counts = torch.bincount(y[y >= 0], minlength=len(task.classes)).tolist()
    parts = [f"{c} {n}" for c, n in zip(task.classes, counts)]
    if len(parts) > SHOWN_CLASSES:
        parts = parts[:SHOWN_CLASSES] + [f"… {len(parts) - SHOWN_CLASSES} more"]
    return " · ".join(parts)
