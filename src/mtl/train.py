"""One training path for every experiment kind: compose -> data -> net -> Lightning -> run record.

Everything a user's input can break (config, data, source checkpoint) is checked before the
run directory is created, so a mistake never leaves a half-written run behind.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from mtl.errors import UserError
from mtl.records import PARADIGM, is_run_dir, read_record, write_record

CHECKPOINT_DIR = "checkpoints"


class RunInterrupted(UserError):
    exit_code = 130


@dataclass
class Prepared:
    """A run ready to train: everything built, nothing written yet."""

    cfg: Any
    kind: str
    data: Any
    module: Any
    source: dict[str, Any] | None
    transfer: dict[str, Any] | None


def run(cfg: Any, log: Callable[[str], None] = print, on_start: Callable[[Path], None] | None = None) -> list[dict[str, Any]]:
    """Run the experiment `cfg` describes (cfg.kind); returns the run records it wrote, each
    with its `run_dir`. `on_start(run_dir)` is called as soon as a run's directory exists.

    `single` is the same run once per task, each recorded on its own. Under DDP every process
    calls this; global rank 0 writes the records and returns them, the others return [].
    """
    if cfg.kind != "single":
        prepared = [prepare(cfg, log)]
    else:
        from mtl.data.build import build_data

        _check_settings(cfg)  # before the data is built
        # built once; each task's run gets a view sharing its inputs
        everything = build_data(cfg.data, cfg.data_dir, list(cfg.tasks) if cfg.tasks else None)
        prepared = []
        for name in list(cfg.tasks) if cfg.tasks else [t.name for t in everything.tasks]:
            one = cfg.copy()
            one.tasks = [name]
            prepared.append(prepare(one, log, everything.only([name])))  # all checked before the first one trains
    records = [train(p, log, on_start=on_start) for p in prepared]
    return [r for r in records if r is not None]  # under DDP, only global rank 0 records


def prepare(cfg: Any, log: Callable[[str], None] = print, data: Any = None) -> Prepared:
    """Check everything a user can get wrong and build what the run needs: data (unless `data`,
    an already built DataBundle, is given), network, method, fine-tune strategy."""
    import pytorch_lightning as pl

    from mtl.data.build import build_data
    from mtl.finetune import build_strategy, load_source, transfer_weights
    from mtl.methods import build_method
    from mtl.models.net import MultiTaskNet
    from mtl.module import MultiTaskModule

    _check_settings(cfg)
    kind = cfg.kind
    source = load_source(cfg.source) if kind == "finetune" else None
    reference = source["mtl"]["data"] if source is not None else None
    if data is None:
        data = build_data(cfg.data, cfg.data_dir, list(cfg.tasks) if cfg.tasks else None, reference)
    # What the source inferred from the data (tasks, classes, feature encoding) goes into the
    # saved config and checkpoint: a resumed run, an eval or a fine-tune sees the same data.
    cfg.data = data.spec
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    net_spec = {
        "tasks": [t.to_dict() for t in data.tasks],
        "input_shape": list(data.input_shape),
        "backbone": OmegaConf.to_container(cfg.model.backbone),
        "head": OmegaConf.to_container(cfg.model.head),
        "arch": OmegaConf.to_container(cfg.arch),
    }
    net = MultiTaskNet(
        data.tasks, data.input_shape, net_spec["backbone"], net_spec["head"], net_spec["arch"]
    )
    net.set_input_stats(data.input_mean, data.input_std)
    net.set_target_stats(data.target_stats)
    transfer = transfer_weights(net, source, log) if source is not None else None
    strategy = build_strategy(cfg.finetune, net, cfg.trainer.max_epochs) if kind == "finetune" else None
    weighting = build_method(cfg.method, [t.name for t in data.tasks])
    weighting.check_trainer(cfg.trainer)
    meta = {
        "net": net_spec,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "run": {"kind": kind, "data": cfg.data.name, "tasks": [t.name for t in data.tasks]},
    }
    module = MultiTaskModule(
        net, weighting, OmegaConf.to_container(cfg.optim), strategy, meta, diagnostics=bool(cfg.get("diagnostics"))
    )
    return Prepared(cfg, kind, data, module, source, transfer)


def _check_settings(cfg: Any) -> None:
    """The mistakes a config can hold that no type check catches."""
    from mtl.module import OPTIMIZERS

    if cfg.optim.name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer '{cfg.optim.name}'; set optim.name to one of {', '.join(OPTIMIZERS)}")
    if cfg.kind == "finetune" and not cfg.source:
        raise UserError("fine-tuning needs a source: mtl run finetune --source CHECKPOINT_OR_RUN_DIR")
    if cfg.kind != "finetune" and cfg.source:
        raise UserError(f"--source is only for `mtl run finetune`, not `mtl run {cfg.kind}`")


def train(
    prepared: Prepared,
    log: Callable[[str], None] = print,
    resume_dir: Path | None = None,
    on_start: Callable[[Path], None] | None = None,
) -> dict[str, Any] | None:
    """Fit, test the best checkpoint, write the run record and return it (with `run_dir`).
    `on_start(run_dir)` is called as soon as the run directory exists.

    Under DDP only global rank 0 writes the record (the checkpoints are rank 0's too); the other
    processes train their share and return None.
    """
    from mtl.data.datamodule import FitData

    cfg, kind, data, module = prepared.cfg, prepared.kind, prepared.data, prepared.module
    run_dir = resume_dir or Path(cfg.runs_dir) / kind / _run_id(cfg, data)
    trainer = _trainer(cfg, module, run_dir)  # may still raise a UserError: nothing written yet
    fit_data = FitData(data, cfg.loader, cfg.seed)
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    ckpt_path = str(last) if resume_dir else None
    if not writes_records(trainer):
        trainer.fit(module, datamodule=fit_data, ckpt_path=ckpt_path)
        return None
    if resume_dir is None:
        record = _new_record(cfg, prepared, run_dir)
    else:
        record = read_record(run_dir)
        record.update(status="running", error=None)
    module.meta["run"].update(run_id=record["run_id"], label=record["label"])
    try:
        write_record(run_dir, record)
    except OSError as e:
        raise UserError(f"cannot write the run directory {run_dir} ({e.strerror}); set runs_dir to a writable folder") from None
    if on_start is not None:
        on_start(run_dir)
    tester = _tester(cfg)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=fit_data, ckpt_path=ckpt_path)
        fit_s = time.perf_counter() - started
        test_data = data.loader("test", cfg.loader.batch_size, cfg.seed, cfg.loader.num_workers, cfg.loader.pin_memory)
        tester.test(module, test_data, ckpt_path=trainer.checkpoint_callback.best_model_path, verbose=False)
        _take_bookkeeping(module, last)
    except (KeyboardInterrupt, SystemExit) as e:
        if isinstance(e, SystemExit) and not (trainer.interrupted or tester.interrupted):
            raise
        record.update(status="interrupted", error="interrupted by the user (Ctrl-C)")
        _finish(record, run_dir, trainer, module, started)
        raise RunInterrupted(f"interrupted; the run is kept at {run_dir} — continue it with: mtl run {kind} --resume {run_dir}") from None
    except UserError:
        if resume_dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        _finish(record, run_dir, trainer, module, started)
        raise
    record.update(status="complete", test=module.test_results)
    record["timing"]["fit_s"] = round(record["timing"].get("fit_s", 0) + fit_s, 3)
    record["timing"]["test_s"] = round(time.perf_counter() - started - fit_s, 3)
    _finish(record, run_dir, trainer, module, started)
    return {**record, "run_dir": str(run_dir)}


def resume(run_dir: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Continue an interrupted (or failed) run from its last checkpoint, in the same directory."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run directory (no run.json); give a directory under runs/<kind>/")
    record = read_record(run_dir)
    if record["status"] == "complete":
        raise UserError(f"run {run_dir} is already complete; nothing to resume — start a new run instead")
    if not (run_dir / CHECKPOINT_DIR / "last.ckpt").is_file():
        raise UserError(f"run {run_dir} stopped before its first epoch ended, so there is no checkpoint; start it again")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    prepared = prepare(cfg, log)
    prepared.transfer = record.get("transfer")
    return train(prepared, log, resume_dir=run_dir)


def _trainer_settings(cfg: Any) -> dict[str, Any]:
    settings = OmegaConf.to_container(cfg.trainer)
    return {k: v for k, v in settings.items() if v is not None}


def _progress_bar(settings: dict[str, Any]) -> list[Any]:
    from pytorch_lightning.callbacks import RichProgressBar

    return [RichProgressBar(leave=False)] if settings.get("enable_progress_bar", True) else []


def _trainer(cfg: Any, module: Any, run_dir: Path) -> Any:
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint

    from mtl.quiet import Quiet, quiet_lightning

    quiet_lightning()
    settings = _trainer_settings(cfg)
    callbacks = [
        ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename="best", monitor="val/score", mode="max", save_last=True),
        *_progress_bar(settings),
        Quiet(),
    ]
    if module.strategy is not None:
        callbacks.extend(module.strategy.callbacks())
    logger = instantiate(cfg.logger, save_dir=str(run_dir))
    try:
        return pl.Trainer(
            **settings, callbacks=callbacks, logger=logger, enable_model_summary=False, num_sanity_val_steps=0
        )
    except (TypeError, ValueError) as e:
        message = str(e).splitlines()[0]
        raise UserError(f"bad trainer setting: {message}; check the trainer.* overrides") from None
    except pl.utilities.exceptions.MisconfigurationException as e:
        raise UserError(f"bad trainer setting: {str(e).splitlines()[0]}") from None


def writes_records(trainer: Any) -> bool:
    """Whether this process writes the run record: global rank 0, as known before any process is
    started — the launching process under ddp_spawn (its workers' results come back to it),
    rank 0 under ddp, SLURM or torchrun (the cluster environment's variables say which)."""
    if hasattr(trainer.strategy, "set_world_ranks"):
        trainer.strategy.set_world_ranks()  # what Lightning does at setup, from the same variables
    return trainer.global_rank == 0


def _take_bookkeeping(module: Any, last: Path) -> None:
    """The per-epoch history, task weights and diagnostics from the last checkpoint: under
    ddp_spawn they were kept in the worker processes, and rank 0 wrote them into its checkpoints.
    Read on every strategy (one small file) so that this process never depends on which one ran."""
    import torch

    saved = torch.load(last, map_location="cpu", weights_only=False)["mtl"]
    module.history, module.task_weights = saved["history"], saved["task_weights"]
    module.diagnostics = saved.get("diagnostics", [])


def _tester(cfg: Any) -> Any:
    """The Trainer that tests the best checkpoint: on one device, whatever fit ran on, so every
    test example counts exactly once (a DistributedSampler would pad the split with repeats) and
    the results land in this process (ddp_spawn trained in others)."""
    import pytorch_lightning as pl

    settings = _trainer_settings(cfg)
    return pl.Trainer(
        accelerator=settings["accelerator"],
        devices=1,
        num_nodes=1,
        precision=settings["precision"],
        deterministic=settings.get("deterministic", False),
        limit_test_batches=settings.get("limit_test_batches", 1.0),
        callbacks=_progress_bar(settings),
        enable_progress_bar=settings.get("enable_progress_bar", True),
        # run.json holds the test metrics; a logger here would restart the training log under ddp_spawn
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def _run_id(cfg: Any, data: Any) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tasks = "-" + "-".join(t.name for t in data.tasks) if cfg.kind == "single" else ""
    # 3 random bytes: a parallel sweep starts many runs of one configuration in the same second
    return f"{stamp}-{cfg.data.name}-{cfg.kind}{tasks}-s{cfg.seed}-{os.urandom(3).hex()}"


def _new_record(cfg: Any, prepared: Prepared, run_dir: Path) -> dict[str, Any]:
    data = prepared.data
    run_dir.mkdir(parents=True, exist_ok=False)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    kind = cfg.kind
    finetune = OmegaConf.to_container(cfg.finetune) if kind == "finetune" else None
    return {
        "schema": 1,
        "run_id": run_dir.name,
        "label": f"{cfg.data.name}/{kind}",
        "kind": kind,
        "paradigm": PARADIGM[kind],
        "status": "running",
        "data": {
            "name": cfg.data.name,
            "train_size": len(data.splits["train"]),
            "train_fraction": cfg.data.get("train_fraction"),
            "split_sizes": {name: len(split) for name, split in data.splits.items()},
            "labelled": data.labelled,
            "majority": data.majority_rate("test"),
        },
        "tasks": [t.to_dict() for t in data.tasks],
        "method": cfg.method.name,
        "arch": cfg.arch.name,
        "backbone": cfg.model.backbone.name,
        "finetune": finetune,
        "source": _source_summary(prepared.source),
        "transfer": prepared.transfer,
        "seed": cfg.seed,
        "test": {},
        "best_val": {},
        "history": [],
        "task_weights": [],
        "diagnostics": [],
        "checkpoints": {},
        "versions": _versions(),
        "timing": {"started": _now()},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "error": None,
    }


def _finish(record: dict[str, Any], run_dir: Path, trainer: Any, module: Any, started: float) -> None:
    checkpoint = next((c for c in trainer.checkpoint_callbacks), None)
    if checkpoint is not None:
        best = checkpoint.best_model_path
        last = run_dir / CHECKPOINT_DIR / "last.ckpt"
        record["checkpoints"] = {
            "best": os.path.relpath(best, run_dir) if best else None,
            "last": os.path.relpath(last, run_dir) if last.exists() else None,
        }
    record["history"] = module.history
    record["task_weights"] = module.task_weights
    record["diagnostics"] = module.diagnostics
    if module.history:
        best_entry = max(module.history, key=lambda e: e["val/score"])
        record["best_val"] = {
            name: {k.split("/")[2]: v for k, v in best_entry.items() if k.startswith(f"val/{name}/")}
            for name in module.tasks
        }
        record["best_epoch"] = best_entry["epoch"]
    timing = record["timing"]
    timing["ended"] = _now()
    timing["wall_s"] = round(timing.get("wall_s", 0) + time.perf_counter() - started, 3)
    write_record(run_dir, record)


def _source_summary(source: dict[str, Any] | None) -> dict[str, Any] | None:
    if source is None:
        return None
    run = source["mtl"]["run"]
    return {
        "path": source["path"],
        "run_id": run.get("run_id"),
        "kind": run.get("kind"),
        "data": run.get("data"),
        "tasks": run.get("tasks"),
        "label": run.get("label") or f"{run.get('data')}/{run.get('kind')}",
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("mtl", "torch", "pytorch-lightning", "torchmetrics", "hydra-core", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
