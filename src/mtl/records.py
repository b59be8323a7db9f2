"""The run record (`run.json`): the unit everything downstream reads.

Written atomically (temp file + rename) so a reader never sees half a record; read
without torch so that `mtl compare` stays fast. Schema (version 1):

    schema        1
    run_id        "20261203-163000-fruits-multitask-s0-3f2a"
    kind          "multitask" | "single" | "finetune"
    paradigm      "joint" | "none" | "sequential"
    status        "running" | "complete" | "failed" | "interrupted"
    data          {"name", "train_size" (examples actually used), "train_fraction",
                   "split_sizes": {"train", "val", "test"}, "labelled": {task: n}}
    tasks         [{"name", "kind", "classes", "metric", "higher_is_better", "column"}]
    method        weighting / aggregation method name, e.g. "ew"
    arch          architecture name, e.g. "hps";  backbone: backbone name, e.g. "cnn"
    finetune      null, or {"strategy": "full" | "linear_probe" | ..., ...its settings}
    source        null, or {"path", "run_id", "run_dir", "data", "kind", "tasks", "label"}
    transfer      null, or {"backbone", "heads": {task: status}, "transferred": [...], "initialised": [...],
                  "reasons": {tensor: why it starts fresh}, "mapped": {target tensor: source tensor}, "note"}
    seed          training seed (the data seed is data.seed inside config)
    test          {task: {metric_name: value, ...}}   per-task test metrics
    best_val      {task: {metric_name: value}} at the best checkpoint
    history       [{"epoch": e, "train/loss": ..., "val/<task>/<metric>": ..., ...}]
    task_weights  [{"epoch": e, "<task>": w, ...}]   weights in effect, per epoch (gradient methods:
                  the epoch's mean aggregation weights; none for GradDrop and ConFIG)
    diagnostics   [] unless diagnostics=true; then per epoch {"epoch", "pairs": [{"tasks": [a, b],
                  "cosine", "magnitude_similarity", "conflict_fraction", "steps"}],
                  "affinity": [{"from", "to", "value"}]}   (see mtl/diagnostics.py)
    checkpoints   {"best": relative path, "last": relative path}
    versions      {"python", "mtl", "torch", "pytorch_lightning", ...}
    timing        {"started", "ended" (ISO 8601, UTC), "wall_s", "fit_s", "test_s"}
    config        the resolved config
    error         null, or a one-line message (failed / interrupted)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
SCHEMA_VERSION = 1
PARADIGM = {"multitask": "joint", "single": "none", "finetune": "sequential"}


def write_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `run.json` atomically: readers see the old record or the new one, never half."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(run_dir / RUN_FILE, {k: v for k, v in record.items() if k != "run_dir"})


def write_json_atomic(target: Path, document: dict[str, Any]) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=2, default=_jsonable)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """Read a run directory's record; raises FileNotFoundError / ValueError when it is not one."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / RUN_FILE
    with open(path) as f:
        record = json.load(f)
    if not isinstance(record, dict) or "run_id" not in record or "status" not in record:
        raise ValueError(f"{path} is not an mtl run record")
    record.setdefault("run_dir", str(path.parent))
    return record


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every run directory under root (recursively), sorted for stable output."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    return sorted(p.parent for p in root.rglob(RUN_FILE))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in run.json")
