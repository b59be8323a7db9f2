"""Moving a source network's weights into a target network.

Backbone: every tensor transfers whose name and shape match the source's. A target architecture
that differs from the source's (say cross-stitch from a hard-sharing source) holds whole copies
of the backbone (`copies`: its columns or experts): each copy starts from the source's copy of
the same name, else from the source's first copy. What has no counterpart (gates, cross-stitch
units, attention modules) starts fresh and is reported with the reason. A backbone copy that
cannot be filled because the source's backbone has other shapes is an error naming the layer.
A head transfers where the target has a task of the same name, kind and class list; every other
head starts fresh. Nothing is ever loaded half-way.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from mtl.checkpoint import load_checkpoint, net_from_checkpoint, net_state
from mtl.errors import UserError


def load_source(path: str) -> dict[str, Any]:
    return load_checkpoint(path)


def transfer_weights(net: nn.Module, source: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Load what transfers from `source` into `net`; return the transfer report."""
    source_state = net_state(source)
    spec = source["mtl"]["net"]
    source_tasks = {t["name"]: t for t in spec["tasks"]}
    source_copies = list(net_from_checkpoint(source).backbone.copies)
    target_state = _canonical_state(net)
    loaded: dict[str, torch.Tensor] = {}
    mapped: dict[str, str] = {}
    reasons: dict[str, str] = {}

    def mismatch(name: str, theirs_name: str, theirs: torch.Tensor | None, mine: torch.Tensor) -> UserError:
        found = "is missing" if theirs is None else f"has shape {tuple(theirs.shape)}, the target {tuple(mine.shape)}"
        layer = f"'{name}'" if theirs_name == name else f"'{name}' (from the source's '{theirs_name}')"
        return UserError(
            f"source {source['path']} has a different backbone: layer {layer} {found}; fine-tune with the "
            f"source's model settings (backbone {spec['backbone']}, arch {spec['arch']['name']})"
        )

    for name, tensor in target_state.items():
        if not name.startswith("backbone."):
            continue
        copy, rest = _split_copy(name, net.backbone.copies)
        theirs_name = name
        if copy is not None and name not in source_state:
            # Same-named copy first (exact name, above), else the source's first backbone copy.
            theirs_name = f"backbone.{source_copies[0]}.{rest}"
        theirs = source_state.get(theirs_name)
        if theirs is not None and theirs.shape == tensor.shape:
            loaded[name] = theirs
            if theirs_name != name:
                mapped[name] = theirs_name
        elif copy is not None:
            raise mismatch(name, theirs_name, theirs, tensor)
        elif theirs is None:
            reasons[name] = f"initialised: the source (arch {spec['arch']['name']}) has no such layer"
        else:
            reasons[name] = f"initialised: the source's layer has shape {tuple(theirs.shape)}, the target {tuple(tensor.shape)}"

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
    backbone_total = sum(1 for k in target_state if k.startswith("backbone."))
    backbone_loaded = sum(1 for k in loaded if k.startswith("backbone."))
    summary = f"transferred ({backbone_loaded} tensors)"
    if backbone_loaded < backbone_total:
        summary = f"transferred {backbone_loaded} of {backbone_total} tensors"
    if mapped:
        summary += f", {len(mapped)} of them into copies of the source backbone ({', '.join(source_copies[:1])})"
    report = {
        "backbone": summary,
        "heads": heads,
        "transferred": sorted(loaded),
        "initialised": initialised,
        "reasons": reasons,
        "mapped": mapped,
        "note": None if shared else "the source shares no task with the target: only the backbone transfers",
    }
    log(f"transfer from {source['path']}:")
    log(f"  backbone: {report['backbone']}")
    for reason in sorted(set(reasons.values())):
        count = sum(1 for r in reasons.values() if r == reason)
        log(f"  {count} backbone tensors {reason}")
    for task_name, status in heads.items():
        log(f"  head '{task_name}': {status}")
    if report["note"]:
        log(f"  note: {report['note']}")
    return report


def _canonical_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without aliases (e.g. `backbone.blocks`, which re-lists other modules'
    layers for gradual unfreezing): each tensor under the name it was first registered by."""
    seen: set[int] = set()
    state = {}
    for name, tensor in net.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        state[name] = tensor.detach()
    return state


def _split_copy(name: str, copies: tuple[str, ...]) -> tuple[str | None, str]:
    """('backbone.columns.fruit.blocks.0.0.weight', copies) -> ('columns.fruit', 'blocks.0.0.weight')."""
    for copy in copies:
        prefix = f"backbone.{copy}."
        if name.startswith(prefix):
            return copy, name[len(prefix) :]
    return None, name
