"""Moving a source network's weights into a target network, all or nothing per tensor group.

The backbone always transfers, and must match exactly (else: which layer differs, and how).
A head transfers where the target has a task of the same name, kind and class list; every
other head starts fresh. Nothing is ever loaded half-way.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from mtl.checkpoint import load_checkpoint, net_state
from mtl.errors import UserError


def load_source(path: str) -> dict[str, Any]:
    return load_checkpoint(path)


def transfer_weights(net: nn.Module, source: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Load what transfers from `source` into `net`; return the transfer report."""
    source_state = net_state(source)
    source_tasks = {t["name"]: t for t in source["mtl"]["net"]["tasks"]}
    target_state = net.state_dict()
    loaded: dict[str, Any] = {}

    for name, tensor in target_state.items():
        if not name.startswith("backbone."):
            continue
        theirs = source_state.get(name)
        if theirs is None or theirs.shape != tensor.shape:
            found = "is missing" if theirs is None else f"has shape {tuple(theirs.shape)}, the target {tuple(tensor.shape)}"
            spec = source["mtl"]["net"]
            raise UserError(
                f"source {source['path']} has a different backbone: layer '{name}' {found}; fine-tune with the "
                f"source's model settings (backbone {spec['backbone']}, arch {spec['arch']['name']})"
            )
        loaded[name] = theirs

    heads: dict[str, str] = {}
    for task_name, task in net.tasks.items():
        theirs = source_tasks.get(task_name)
        if theirs is None:
            heads[task_name] = "initialised: the source has no task of this name"
        elif theirs["kind"] != task.kind or list(theirs["classes"]) != list(task.classes):
            heads[task_name] = (
                f"initialised: class lists differ (source {theirs['classes']}, target {list(task.classes)})"
            )
        else:
            prefix = f"heads.{task_name}."
            mine = {k: v for k, v in target_state.items() if k.startswith(prefix)}
            if any(k not in source_state or source_state[k].shape != v.shape for k, v in mine.items()):
                heads[task_name] = "initialised: the head's layers differ in shape (model.head settings)"
            else:
                loaded.update({k: source_state[k] for k in mine})
                heads[task_name] = "transferred"

    net.load_state_dict(loaded, strict=False)
    initialised = [name for name in target_state if name not in loaded]
    shared = [name for name, status in heads.items() if status == "transferred"]
    report = {
        "backbone": f"transferred ({sum(1 for k in loaded if k.startswith('backbone.'))} tensors)",
        "heads": heads,
        "transferred": sorted(loaded),
        "initialised": initialised,
        "note": None if shared else "the source shares no task with the target: only the backbone transfers",
    }
    log(f"transfer from {source['path']}:")
    log(f"  backbone: {report['backbone']}")
    for task_name, status in heads.items():
        log(f"  head '{task_name}': {status}")
    if report["note"]:
        log(f"  note: {report['note']}")
    return report
