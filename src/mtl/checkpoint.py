"""Reading checkpoints back: the network alone (for eval and as a fine-tune source), with every
way a user's file can be wrong turned into one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtl.errors import UserError
from mtl.models.net import MultiTaskNet
from mtl.records import is_run_dir, read_record
from mtl.tasks import Task


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A checkpoint file, or a run directory (then its best checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a checkpoint file (.ckpt) or a run directory under runs/")
    if path.is_dir():
        if not is_run_dir(path):
            raise UserError(f"{path} is not a run directory (no run.json); give a checkpoint file or a run directory")
        record = read_record(path)
        relative = (record.get("checkpoints") or {}).get(which)
        if not relative or not (path / relative).is_file():
            raise UserError(
                f"run {path} has no {which} checkpoint (status: {record.get('status')}); use a run that finished an epoch"
            )
        return path / relative
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated zip, not a torch file, pickle garbage...
        raise UserError(
            f"{path} is not a readable checkpoint ({type(e).__name__}); it may be truncated — give an mtl .ckpt file"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "net" not in checkpoint.get("mtl", {}):
        raise UserError(f"{path} is not an mtl checkpoint (no network description); give a .ckpt written by mtl run")
    checkpoint["path"] = str(path)
    return checkpoint


def net_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's parameters and buffers, without the module prefix."""
    return {k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}


def net_from_checkpoint(checkpoint: dict[str, Any]) -> MultiTaskNet:
    spec = checkpoint["mtl"]["net"]
    net = MultiTaskNet(
        tasks=[Task.from_dict(t) for t in spec["tasks"]],
        input_shape=tuple(spec["input_shape"]),
        backbone=spec["backbone"],
        head=spec["head"],
        arch=spec["arch"],
    )
    net.load_state_dict(net_state(checkpoint))
    return net.eval()
