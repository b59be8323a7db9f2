"""`mtl eval`: a checkpoint on a data set's test split (its own data set by default)."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from mtl.checkpoint import load_checkpoint, net_from_checkpoint
from mtl.errors import UserError


@torch.no_grad()
def evaluate(
    path: str, data_cfg: Any | None = None, data_dir: str = "data", batch_size: int = 256, data_overrides: list[str] = ()
) -> dict[str, Any]:
    """Per-task test metrics of the checkpoint at `path` (file or run directory).

    `data_cfg` replaces the checkpoint's own data set; the tasks evaluated are those the two
    share by name, kind and class list. Without it, the checkpoint's own data config is used,
    with `data_overrides` (dotted keys inside it, e.g. "splits.test=500") applied.
    """
    from mtl.data.build import build_data
    from mtl.module import task_metrics, update_metrics

    checkpoint = load_checkpoint(path)
    net = net_from_checkpoint(checkpoint)
    if data_cfg is None:
        data_cfg = OmegaConf.merge(checkpoint["mtl"]["data"], OmegaConf.from_dotlist(list(data_overrides)))
    data = build_data(data_cfg, data_dir, reference=checkpoint["mtl"]["data"])
    fitting = [t for t in data.tasks if t.name in net.tasks and _same(net.tasks[t.name], t)]
    if not fitting:
        raise UserError(
            f"the checkpoint's tasks ({', '.join(net.tasks)}) fit none of data '{data.name}' "
            f"({', '.join(t.name for t in data.tasks)}); evaluate it on a data set with a matching task"
        )
    if tuple(data.input_shape) != tuple(checkpoint["mtl"]["net"]["input_shape"]) and not net.is_image:
        raise UserError(f"data '{data.name}' has input shape {data.input_shape}, the checkpoint expects {checkpoint['mtl']['net']['input_shape']}")
    metrics = {t.name: task_metrics(t) for t in fitting}
    for x, y in data.loader("test", batch_size, seed=0):
        update_metrics(metrics, fitting, net(x), y)
    return {
        "checkpoint": checkpoint["path"],
        "run_id": checkpoint["mtl"]["run"].get("run_id"),
        "kind": checkpoint["mtl"]["run"].get("kind"),
        "data": {"name": data.name, "split_sizes": {"test": len(data.splits["test"])}, "majority": data.majority_rate("test")},
        "tasks": [t.to_dict() for t in fitting],
        "test": {name: {k: float(v) for k, v in m.compute().items()} for name, m in metrics.items()},
        "skipped_tasks": [t.name for t in data.tasks if t not in fitting],
    }


def _same(a: Any, b: Any) -> bool:
    return a.kind == b.kind and tuple(a.classes) == tuple(b.classes)
