"""`mtl study NAME`: a whole comparison — several runs × training sizes × seeds — then compare.

A study is a YAML file in conf/study/ (or any path):

    name: fruits-to-objects
    description: one line
    seeds: 3
    train_sizes: [60, 300, {size: 1500, overrides: [trainer.max_epochs=8]}]   # null = full split
    common: [trainer.max_epochs=10]          # overrides for every run
    runs:
      - {id: source, kind: multitask, overrides: [data=fruits], sized: false}
      - {id: single, kind: single, overrides: [data=objects]}
      - {id: ft, kind: finetune, source: source, overrides: [data=objects, finetune=full]}

Every (run, size, seed) is one job. A fine-tune job starts from its source run of the same
seed. Runs live under <runs_dir>/studies/<name>/, indexed in study.json there: rerunning a
study skips completed jobs and resumes interrupted ones, so an interrupted study continues.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mtl.config import KINDS, compose, config_dir, is_launcher_override, quoted
from mtl.errors import UserError
from mtl.records import read_record, write_json_atomic

INDEX = "study.json"
RUN_KEYS = {"id", "kind", "overrides", "source", "sized"}
STUDY_KEYS = {"name", "description", "seeds", "train_sizes", "common", "runs"}


@dataclass
class Job:
    key: str  # "<run id>/size=<n|full>/seed=<s>"
    run_id: str
    kind: str
    size: int | None
    seed: int
    overrides: list[str]
    source_key: str | None = None
    cfg: Any = None


@dataclass
class Study:
    name: str
    description: str
    seeds: list[int]
    jobs: list[Job] = field(default_factory=list)
    home: Path = Path()
    launcher: list[str] = field(default_factory=list)  # e.g. [hydra/launcher=joblib]: jobs go through it


def load_study(name: str, runs_dir: str | Path = "runs", seeds: int | None = None,
               sizes: list[int | None] | None = None, overrides: list[str] = ()) -> Study:
    """Read a study config and expand it into jobs, every job's config composed (and so checked)
    before anything trains."""
    spec = _read_spec(name)
    n_seeds = seeds if seeds is not None else int(spec.get("seeds", 1))
    if n_seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {n_seeds}")
    size_entries = [{"size": s, "overrides": []} for s in sizes] if sizes else [_size_entry(s) for s in spec.get("train_sizes") or [None]]
    launcher = [o for o in overrides if is_launcher_override(o)]
    common = [str(o) for o in spec.get("common") or []]
    user = [o for o in overrides if not is_launcher_override(o)]  # last, so they win
    study_name = str(spec["name"])
    home = Path(runs_dir) / "studies" / study_name
    study = Study(study_name, str(spec.get("description", "")), list(range(n_seeds)), home=home, launcher=launcher)
    ids = set()
    for run in spec["runs"]:
        _check_run(run, ids, study_name)
        ids.add(run["id"])
        sized = run.get("sized", True)
        for entry in size_entries if sized else [{"size": None, "overrides": []}]:
            for seed in study.seeds:
                size = entry["size"]
                job_overrides = [*common, *entry["overrides"], *map(str, run.get("overrides") or []), *user,
                                 f"seed={seed}", f"runs_dir={home}"]
                if size is not None:
                    job_overrides.append(f"data.train_size={size}")
                source = run.get("source")
                study.jobs.append(
                    Job(
                        key=_key(run["id"], size, seed), run_id=run["id"], kind=run["kind"], size=size, seed=seed,
                        overrides=job_overrides,
                        source_key=_key(source, None if not _sized(spec, source) else size, seed) if source else None,
                    )
                )
    for job in study.jobs:
        job.cfg = compose(job.kind, job.overrides)
    return study


def run_study(study: Study, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run what is missing, in dependency order (sources first); returns the index."""
    study.home.mkdir(parents=True, exist_ok=True)
    index = _read_index(study.home)
    started = time.perf_counter()
    todo = [job for job in study.jobs if not _complete(index.get(job.key))]
    log(f"study {study.name}: {len(study.jobs)} jobs, {len(study.jobs) - len(todo)} already complete")
    if study.launcher:
        _run_with_launcher(study, index, todo, log)
    else:
        _run_in_process(study, index, todo, log)
    # the time of the last call that ran jobs: a rerun that finds everything complete keeps it
    meta = {"name": study.name, **({"last_run_s": round(time.perf_counter() - started, 1)} if todo else {})}
    _write_index(study.home, index, meta)
    return index


def _run_in_process(study: Study, index: dict, todo: list[Job], log: Callable[[str], None]) -> None:
    """One job after another in this process, sources first; interrupted runs are resumed."""
    for number, job in enumerate(sorted(todo, key=lambda j: j.source_key is not None), start=1):
        log(f"[{number}/{len(todo)}] {job.key}")
        cfg = job.cfg
        if job.source_key is not None:
            source_dirs = index.get(job.source_key, {}).get("run_dirs") or []
            if not _complete(index.get(job.source_key)):
                log(f"  skipped: its source {job.source_key} did not complete")
                continue
            cfg = cfg.copy()
            cfg.source = source_dirs[0]
        index[job.key] = {"run_dirs": _run_job(job, cfg, index.get(job.key, {}).get("run_dirs") or [], index, study.home, log)}
        _write_index(study.home, index)


def _run_with_launcher(study: Study, index: dict, todo: list[Job], log: Callable[[str], None]) -> None:
    """The jobs through the chosen Hydra launcher, in two waves: sources, then what starts from
    them. A job that did not complete before is run again from scratch (its old runs removed)."""
    from mtl.sweep import Job as LaunchJob
    from mtl.sweep import run_jobs

    for wave in ([j for j in todo if j.source_key is None], [j for j in todo if j.source_key is not None]):
        ready = []
        for job in wave:
            overrides = list(job.overrides)
            if job.source_key is not None:
                if not _complete(index.get(job.source_key)):
                    log(f"  skipped {job.key}: its source {job.source_key} did not complete")
                    continue
                overrides.append(f"source={quoted(index[job.source_key]['run_dirs'][0])}")
            for run_dir in index.pop(job.key, {}).get("run_dirs") or []:
                shutil.rmtree(run_dir, ignore_errors=True)
            ready.append((job, LaunchJob(job.kind, tuple(overrides))))
        if not ready:
            continue
        for (job, _), outcome in zip(ready, run_jobs([launch for _, launch in ready], study.launcher, log)):
            if outcome.error:
                log(f"  {job.key} failed: {outcome.error}")
            index[job.key] = {"run_dirs": outcome.run_dirs}
        _write_index(study.home, index)


def _run_job(job: Job, cfg: Any, known: list[str], index: dict, home: Path, log: Callable[[str], None]) -> list[str]:
    """Finish one job: resume its runs that reached a checkpoint, start again those that did
    not (their directories are removed: a run without a checkpoint holds nothing to keep)."""
    from mtl.train import resume, run

    complete = [d for d in known if _status(d) == "complete"]
    unfinished = [d for d in known if d not in complete]
    resumed = []
    for run_dir in unfinished:
        if (Path(run_dir) / "checkpoints" / "last.ckpt").is_file():
            resumed.append(resume(run_dir, log)["run_dir"])
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    done = complete + resumed
    if cfg.kind == "single":
        have = {read_record(d)["tasks"][0]["name"] for d in done}
        from mtl.data.build import data_task_names

        wanted = list(cfg.tasks) if cfg.tasks else data_task_names(cfg.data, cfg.data_dir)
        missing = [t for t in wanted if t not in have]
        if not missing:
            return done
        cfg = cfg.copy()
        cfg.tasks = missing
    elif done:
        return done

    started: list[str] = []

    def remember(run_dir: Path) -> None:  # index it now, so an interruption can resume it
        started.append(str(run_dir))
        index[job.key] = {"run_dirs": done + started}
        _write_index(home, index)

    return done + [r["run_dir"] for r in run(cfg, log, on_start=remember)]


def compare_study(study: Study) -> Any:
    """`mtl compare` over exactly the study's runs; writes comparison.md (with 95% intervals) and
    comparison.png beside them and returns the comparison for printing."""
    from mtl import compare

    records, skipped = compare.load_runs(study_run_dirs(study))
    comparison = compare.build_comparison(records, skipped)
    (study.home / "comparison.md").write_text(compare.render(comparison, "md", show_ci=True))
    compare.plot(comparison, study.home / "comparison.png")
    return comparison


def study_run_dirs(study: Study) -> list[str]:
    index = _read_index(study.home)
    return [d for job in study.jobs for d in (index.get(job.key, {}).get("run_dirs") or [])]


def study_names() -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / "study").glob("*.yaml"))


def _complete(entry: dict | None) -> bool:
    dirs = (entry or {}).get("run_dirs") or []
    return bool(dirs) and all(_status(d) == "complete" for d in dirs)


def _status(run_dir: str) -> str | None:
    try:
        return read_record(run_dir)["status"]
    except (OSError, ValueError):
        return None


def _key(run_id: str, size: int | None, seed: int) -> str:
    return f"{run_id}/size={'full' if size is None else size}/seed={seed}"


def _sized(spec: dict, run_id: str) -> bool:
    return next(r for r in spec["runs"] if r["id"] == run_id).get("sized", True)


def _size_entry(entry: Any) -> dict[str, Any]:
    if isinstance(entry, dict):
        return {"size": entry.get("size"), "overrides": [str(o) for o in entry.get("overrides") or []]}
    return {"size": entry, "overrides": []}


def _read_spec(name: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(config_dir()) / "study" / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown study '{name}'; built-in studies: {', '.join(study_names())} (or give a .yaml path)")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    unknown = set(spec) - STUDY_KEYS
    if unknown:
        raise UserError(f"study {path}: unknown key {sorted(unknown)[0]!r}; keys: {', '.join(sorted(STUDY_KEYS))}")
    if not spec.get("runs"):
        raise UserError(f"study {path} lists no runs; add a `runs:` list")
    spec.setdefault("name", path.stem)
    return spec


def _check_run(run: dict[str, Any], earlier: set[str], study: str) -> None:
    if not isinstance(run, dict) or "id" not in run or "kind" not in run:
        raise UserError(f"study {study}: every run needs an id and a kind, got {run!r}")
    unknown = set(run) - RUN_KEYS
    if unknown:
        raise UserError(f"study {study}: run '{run['id']}' has unknown key {sorted(unknown)[0]!r}; keys: {', '.join(sorted(RUN_KEYS))}")
    if run["kind"] not in KINDS:
        raise UserError(f"study {study}: run '{run['id']}' has kind '{run['kind']}'; use one of {', '.join(KINDS)}")
    if run["id"] in earlier:
        raise UserError(f"study {study}: two runs have the id '{run['id']}'")
    source = run.get("source")
    if (run["kind"] == "finetune") != bool(source):
        raise UserError(f"study {study}: run '{run['id']}': a finetune run needs `source: <id of an earlier run>`, other kinds none")
    if source and source not in earlier:
        raise UserError(f"study {study}: run '{run['id']}' names source '{source}', which is not an earlier run's id")


def _read_index(home: Path) -> dict[str, Any]:
    """The jobs index, its run directories as paths usable from here."""
    path = home / INDEX
    if not path.is_file():
        return {}
    jobs = json.loads(path.read_text()).get("jobs", {})
    return {key: {"run_dirs": [str(home / d) for d in entry["run_dirs"]]} for key, entry in jobs.items()}


def _write_index(home: Path, jobs: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
    """Run directories are stored relative to the study's folder, so the study (or the whole
    runs folder) can be moved, or reached from another working directory."""
    path = home / INDEX
    previous = json.loads(path.read_text()) if path.is_file() else {}
    stored = {
        key: {"run_dirs": [os.path.relpath(d, home) for d in entry["run_dirs"]]} for key, entry in jobs.items()
    }
    write_json_atomic(path, {**previous, **(meta or {}), "jobs": stored})
