"""From a data config to tensors and loaders: the same path for generated and user data.

A data *source* (registered by name, `data.source=`) returns numpy arrays per split; this
module selects tasks, draws the reproducible low-data subset, computes normalisation statistics
on the training split and serves batches straight from memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from mtl.errors import UserError
from mtl.registry import Registry
from mtl.tasks import Task, tasks_from_config

SPLITS = ("train", "val", "test")
Arrays = dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]  # split -> (inputs, {task column: labels})


@dataclass
class Loaded:
    """What a source returns: the arrays, and its data config completed with what it inferred
    from the data (task kinds and classes, a fitted feature encoding), so that a run's saved
    config rebuilds exactly the same data set."""

    arrays: Arrays
    spec: dict[str, Any]
    facts: dict[str, str] = field(default_factory=dict)  # for `mtl data check`: file, rows, image sizes...


SOURCES: Registry[Callable[[Any, Path], Loaded]] = Registry("data source", "data.source")


@SOURCES.register("generated")
def generated_source(cfg: Any, data_dir: Path) -> Loaded:
    from mtl.data.generated import generate_splits, task_classes

    declared = {name: tuple(t["classes"]) for name, t in cfg.tasks.items()}
    for name, classes in declared.items():
        actual = task_classes(cfg.scenario).get(name)
        if actual is None:
            raise UserError(f"data '{cfg.name}': scenario '{cfg.scenario}' has no task '{name}'")
        if tuple(actual) != classes:
            raise UserError(f"data '{cfg.name}': task '{name}' declares classes {list(classes)}, the generator makes {list(actual)}")
    arrays = generate_splits(
        cfg.scenario, dict(cfg.splits), seed=cfg.seed, image_size=cfg.image_size, knobs=dict(cfg.knobs), cache_dir=data_dir
    )
    return Loaded(arrays, OmegaConf.to_container(cfg, resolve=True), {"scenario": f"generated '{cfg.scenario}'"})


@SOURCES.register("images_csv")
def images_csv_source(cfg: Any, data_dir: Path) -> Loaded:
    from mtl.data.images import load_images

    return load_images(cfg, data_dir)


@SOURCES.register("tabular_csv")
def tabular_csv_source(cfg: Any, data_dir: Path) -> Loaded:
    from mtl.data.tabular import load_table

    return load_table(cfg, data_dir)


@SOURCES.register("digits")
def digits_source(cfg: Any, data_dir: Path) -> Loaded:
    from mtl.data.images import load_images
    from mtl.examples.digits import ensure_digits

    ensure_digits(Path(cfg.manifest))
    return load_images(cfg, data_dir)


@dataclass
class Split:
    x: torch.Tensor  # uint8 NHWC images or float features
    y: dict[str, torch.Tensor]  # task -> labels; -1 (classes) or NaN (regression) where unlabelled

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class DataBundle:
    name: str
    tasks: list[Task]
    splits: dict[str, Split]
    input_shape: tuple[int, ...]  # what the network sees: (C, H, W) or (features,)
    input_mean: torch.Tensor
    input_std: torch.Tensor
    labelled: dict[str, int] = field(default_factory=dict)  # labelled training examples per task
    target_stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # regression: train mean, std
    spec: dict[str, Any] = field(default_factory=dict)  # the completed data config (Loaded.spec)
    facts: dict[str, str] = field(default_factory=dict)

    def loader(
        self, split: str, batch_size: int, seed: int, num_workers: int = 0, pin_memory: bool = False, sampler: Sampler | None = None
    ) -> DataLoader:
        data = self.splits[split]
        if sampler is None and split == "train":
            sampler = EpochShuffle(len(data), seed)
        return DataLoader(
            InMemory(data),
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=_as_is,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
        )

    def only(self, task_names: list[str]) -> DataBundle:
        """The same data set restricted to `task_names`, sharing its inputs (no copy): what a
        single-task run of each task needs, built once."""
        _check_names([t.name for t in self.tasks], task_names, self.name)
        return replace(
            self,
            tasks=[t for t in self.tasks if t.name in task_names],
            splits={k: Split(v.x, {t: v.y[t] for t in task_names}) for k, v in self.splits.items()},
            labelled={t: n for t, n in self.labelled.items() if t in task_names},
            target_stats={t: s for t, s in self.target_stats.items() if t in task_names},
        )

    def majority_rate(self, split: str) -> dict[str, float]:
        """Per classification task: the accuracy of always answering the split's most common class."""
        rates = {}
        for t in self.tasks:
            y = self.splits[split].y[t.name]
            if t.kind != "regression":
                y = y[y >= 0]
                rates[t.name] = float(torch.bincount(y).max() / len(y)) if len(y) else float("nan")
        return rates


def build_data(
    data_cfg: Any, data_dir: str | Path, task_names: list[str] | None = None, reference: dict[str, Any] | None = None
) -> DataBundle:
    """Load a data set from its config; keep `task_names` (all when None).

    `reference` is another run's data spec (a fine-tune source's, a checkpoint's): its fitted
    feature encoding is reused unless the config declares one, so the network sees the same
    inputs it was trained on."""
    if reference and reference.get("features") and "features" in data_cfg and data_cfg.features is None:
        data_cfg = data_cfg.copy()
        data_cfg.features = reference["features"]
    if OmegaConf.is_dict(data_cfg.get("tasks")):  # declared up front: a wrong name fails before any loading
        _check_names(list(data_cfg.tasks), task_names, data_cfg.name)
    loaded = SOURCES.get(data_cfg.source)(data_cfg, Path(data_dir))
    dataset = loaded.spec["name"]
    every_task = tasks_from_config(loaded.spec["tasks"], dataset)
    tasks = _select(every_task, task_names, dataset)
    arrays = loaded.arrays
    train_x, train_y = arrays["train"]
    # Stratified by the data set's first classification task, whichever tasks this run keeps:
    # a single-task run on any task trains on the same examples as the multitask run.
    strata = next((train_y[t.column] for t in every_task if t.kind != "regression"), np.zeros(len(train_x), np.int64))
    keep = subset_indices(strata, data_cfg.get("train_size"), data_cfg.get("train_fraction"), data_cfg.seed, dataset)
    if keep is not None:
        arrays = dict(arrays, train=(train_x[keep], {k: v[keep] for k, v in train_y.items()}))
    splits = {name: _to_split(arrays[name], tasks) for name in SPLITS}
    for name, split in splits.items():
        if len(split) == 0:
            raise UserError(f"data '{dataset}': the {name} split is empty; give it examples (data.splits.{name})")
    mean, std = input_stats(splits["train"].x)
    x = splits["train"].x
    input_shape = (x.shape[3], x.shape[1], x.shape[2]) if x.dtype == torch.uint8 and x.ndim == 4 else tuple(x.shape[1:])
    labelled = {t.name: int(_labelled_mask(splits["train"].y[t.name], t).sum()) for t in tasks}
    target_stats = {}
    for t in (t for t in tasks if t.kind == "regression"):
        values = splits["train"].y[t.name].double()
        values = values[~torch.isnan(values)]
        if len(values) > 1:  # else (a tiny training subset) the head keeps plain units
            target_stats[t.name] = (float(values.mean()), float(values.std(correction=0)))
    return DataBundle(dataset, tasks, splits, input_shape, mean, std, labelled, target_stats, loaded.spec, loaded.facts)


def _select(tasks: list[Task], task_names: list[str] | None, name: str) -> list[Task]:
    _check_names([t.name for t in tasks], task_names, name)
    return [t for t in tasks if t.name in task_names] if task_names else tasks


def _check_names(available: list[str], task_names: list[str] | None, name: str) -> None:
    unknown = [t for t in task_names or () if t not in available]
    if unknown:
        raise UserError(f"data '{name}' has no task {', '.join(map(repr, unknown))}; its tasks: {', '.join(available)}")


def data_task_names(data_cfg: Any, data_dir: str | Path) -> list[str]:
    """The data set's task names: declared in its config, or read from its file."""
    declared = data_cfg.get("tasks")
    if OmegaConf.is_dict(declared) or OmegaConf.is_list(declared):
        return [str(name) for name in declared]
    return [t.name for t in build_data(data_cfg, data_dir).tasks]


def preview_data(data_cfg: Any, data_dir: str | Path, out: str | Path, n: int = 36) -> Path:
    """A labelled grid of the first `n` training examples of a data set."""
    from mtl.data.preview import preview_grid

    loaded = SOURCES.get(data_cfg.source)(data_cfg, Path(data_dir))
    tasks = tasks_from_config(loaded.spec["tasks"], loaded.spec["name"])
    images, labels = loaded.arrays["train"]
    if images.ndim != 4:
        raise UserError(f"data '{loaded.spec['name']}' is a table, not images: there is nothing to preview; try `mtl data check`")
    return preview_grid(images[:n], {t.name: labels[t.column][:n] for t in tasks}, {t.name: t.classes for t in tasks}, out, n)


def subset_indices(labels: np.ndarray, size: int | None, fraction: float | None, seed: int, name: str) -> np.ndarray | None:
    """A stratified subset of the training split (by `labels`, the data set's first task),
    drawn from the data seed only, so every kind and training seed sees the same examples."""
    n_total = len(labels)
    if size is not None and fraction is not None:
        raise UserError("give data.train_size or data.train_fraction, not both")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise UserError(f"data.train_fraction must be in (0, 1], got {fraction}")
        size = max(1, round(fraction * n_total))
    if size is None or size == n_total:
        return None
    if not 1 <= size <= n_total:
        raise UserError(f"data.train_size={size} but data '{name}' has {n_total} training examples; use 1..{n_total}")
    rng = np.random.default_rng([seed, 0x5EED])
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / n_total
    take = np.floor(quota).astype(int)
    # largest remainders get the examples that rounding down left over
    for i in np.argsort(-(quota - take), kind="stable")[: size - take.sum()]:
        take[i] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def input_stats(x: torch.Tensor, chunk_values: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training inputs, in chunks of about `chunk_values` values:
    the float64 temporaries stay a few MB, whatever the size of the data set (chunks of 4096
    images of 32x32x3 added ~300 MB to a run's peak memory; bench/bench_memory.py)."""
    channels = x.shape[-1]
    rows = max(1, chunk_values // max(1, x[0].numel()))
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(x), rows):
        part = x[start : start + rows].reshape(-1, channels).double()
        if x.dtype == torch.uint8:
            part = part / 255
        part = torch.nan_to_num(part)
        total += part.sum(0)
        squares += (part * part).sum(0)
        count += part.shape[0]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


def _to_split(arrays: tuple[np.ndarray, dict[str, np.ndarray]], tasks: list[Task]) -> Split:
    x, labels = arrays
    y = {}
    for t in tasks:
        column = labels[t.column]
        y[t.name] = torch.as_tensor(column, dtype=torch.float32 if t.kind == "regression" else torch.int64)
    return Split(torch.from_numpy(np.ascontiguousarray(x)), y)


def _labelled_mask(y: torch.Tensor, task: Task) -> torch.Tensor:
    return ~torch.isnan(y) if task.kind == "regression" else y >= 0


class InMemory(Dataset):
    """Serves whole batches by fancy indexing (`__getitems__`): no per-example Python or collate."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices)
        return self.split.x[idx], {k: v[idx] for k, v in self.split.y.items()}


class EpochShuffle(Sampler[int]):
    """A fresh permutation each epoch, a function of (seed, epoch) alone: a resumed run sees the
    same data order as an uninterrupted one (Lightning calls set_epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def _as_is(batch):
    return batch
