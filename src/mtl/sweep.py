"""Many runs through Hydra's launcher plugins: `mtl run KIND -m` sweeps and the jobs of a study.

Every job is a normal run — `mtl.train.run` on its composed config, recorded in its own
runs/<kind>/<run-id>/ — started by the launcher that `hydra/launcher=` picks: basic (one after
another, the default), joblib (parallel local processes), submitit_local, or slurm /
submitit_slurm (a SLURM cluster). Every job's config, and the launcher's, is composed and checked
before the first job starts. Hydra's own files (and submitit's logs) go to runs_dir/.sweeps/.

Imports no torch: the jobs do.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from mtl.config import compose, config_dir, is_launcher_override
from mtl.errors import UserError


@dataclass(frozen=True)
class Job:
    """One run to launch: an experiment kind and its overrides (no sweeps)."""

    kind: str
    overrides: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " ".join(self.overrides) or "(defaults)"


@dataclass
class Outcome:
    """What a job did: the run directories it wrote (one per task for `single`), their test
    metrics, or the one-line error that stopped it."""

    job: Job
    run_dirs: list[str] = field(default_factory=list)
    tests: list[dict[str, dict[str, float]]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plan:
    """Checked jobs and the launcher that will run them (nothing started yet)."""

    jobs: list[Job]
    launcher: str  # the option name, e.g. basic, joblib, slurm
    settings: dict[str, Any]  # the launcher's resolved settings
    hydra: Any  # the Hydra instance
    config: Any  # the sweep's Hydra config (the first job's, plus the launcher overrides)


def sweep(kind: str, overrides: Sequence[str], log: Callable[[str], None] = print, dry_run: bool = False) -> list[Outcome]:
    """`mtl run KIND -m OVERRIDES`: one job per combination of the sweep's values, in Hydra's
    sweep syntax (seed=0,1,2 method=ew,uw seed=range(3) method=glob(*))."""
    launcher = [o for o in overrides if is_launcher_override(o)]
    hydra = _hydra()
    jobs = [Job(kind, tuple(job)) for job in _expand([o for o in overrides if not is_launcher_override(o)], hydra)]
    plan = check(jobs, launcher, hydra)
    if dry_run:
        _describe(plan, log)
        return []
    return launch(plan, log)


def run_jobs(jobs: Iterable[Job], launcher: Sequence[str] = (), log: Callable[[str], None] = print) -> list[Outcome]:
    """Run `jobs` (each a kind and its overrides) through the launcher that `launcher` overrides
    choose (e.g. ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]; none: one after another).

    Every job is checked before any starts (UserError, one line, on the first mistake). Returns
    one Outcome per job, in order; a job that fails does not stop the others.
    """
    return launch(check(list(jobs), list(launcher)), log)


def check(jobs: list[Job], launcher: Sequence[str], hydra: Any = None) -> Plan:
    """Compose every job's config and the launcher's; raise UserError on the first mistake."""
    if not jobs:
        raise UserError("nothing to run: the sweep has no jobs")
    for override in launcher:
        if not is_launcher_override(override):
            raise UserError(f"'{override}' is not a launcher setting; launcher settings start with hydra/ or hydra.")
    configs = [compose(job.kind, job.overrides) for job in jobs]
    hydra = hydra or _hydra()
    first = jobs[0]
    config = _compose_sweep(hydra, [f"experiment={first.kind}", *first.overrides, *launcher], launcher)
    name = config.hydra.runtime.choices["hydra/launcher"]
    from omegaconf import OmegaConf

    try:
        settings = OmegaConf.to_container(config.hydra.launcher, resolve=True)
    except Exception as e:  # an interpolation that does not resolve, e.g. ${trainer.devices} gone
        raise UserError(f"launcher '{name}': {_first_line(e)}") from None
    on_slurm = str(settings.get("_target_", "")).endswith("SlurmLauncher")
    for job, cfg in zip(jobs, configs):
        if _relaunches_command(cfg.trainer) and not on_slurm:
            raise UserError(
                f"job '{job}': trainer.strategy={cfg.trainer.strategy} starts its other processes by running the "
                "command again, which a sweep's job cannot do; use trainer.strategy=ddp_spawn, or hydra/launcher=slurm"
            )
    return Plan(jobs, name, {k: v for k, v in settings.items() if k != "_target_"}, hydra, config)


def launch(plan: Plan, log: Callable[[str], None] = print) -> list[Outcome]:
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext

    context = HydraContext(config_loader=plan.hydra.config_loader, callbacks=Callbacks(plan.config))
    launcher = Plugins.instance().instantiate_launcher(config=plan.config, hydra_context=context, task_function=run_job)
    log(f"launching {len(plan.jobs)} job{'s' * (len(plan.jobs) != 1)} with the {plan.launcher} launcher")
    try:
        returns = launcher.launch([[f"experiment={job.kind}", *job.overrides] for job in plan.jobs], initial_job_idx=0)
    except Exception as e:  # the launcher's machinery (e.g. sbatch, or a killed job), not a run
        where = plan.config.hydra.sweep.dir
        raise UserError(f"the {plan.launcher} launcher failed: {_first_line(e)}; its logs are under {where}") from None
    outcomes = []
    for job, returned in zip(plan.jobs, returns):
        try:
            outcome = returned.return_value
        except Exception as e:  # the launcher, not the job, failed: run_job catches the job's own errors
            outcome = Outcome(job, error=_first_line(e))
        outcome.job = job
        outcomes.append(outcome)
    return outcomes


def run_job(cfg: Any) -> Outcome:
    """Hydra's task function: one job, in whichever process or machine the launcher chose."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    from mtl.train import RunInterrupted, run

    job = Job(str(cfg.kind))
    hydra = HydraConfig.get()
    print(f"job #{hydra.job.num}: mtl run {job.kind} {' '.join(hydra.overrides.task[1:])}", flush=True)
    try:
        records = run(cfg, print)
    except RunInterrupted:
        raise KeyboardInterrupt from None  # stops the sweep: Hydra's launchers go on after an Exception
    except UserError as e:
        return Outcome(job, error=str(e))
    except Exception as e:
        traceback.print_exc()  # into the job's log (submitit: runs_dir/.sweeps/.../.submitit/)
        return Outcome(job, error=_first_line(e))
    return Outcome(
        job,
        run_dirs=[str(Path(cfg.runs_dir) / r["kind"] / r["run_id"]) for r in records],
        tests=[r["test"] for r in records],
    )


def labels(jobs: Sequence[Job]) -> list[str]:
    """What tells each job apart: its overrides that not every job shares."""
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if jobs else set()
    return [" ".join(o for o in job.overrides if o not in shared) or job.kind for job in jobs]


def _relaunches_command(trainer: Any) -> bool:
    """Whether Lightning would start the other DDP processes by re-running the command line."""
    strategy = str(trainer.strategy)
    if not strategy.startswith("ddp") or any(word in strategy for word in ("spawn", "fork", "notebook")):
        return False
    return not (trainer.devices == 1 and trainer.num_nodes == 1)


def _hydra() -> Any:
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    return Hydra.create_main_hydra2(task_name="mtl", config_search_path=create_config_search_path(config_dir()))


def _expand(overrides: list[str], hydra: Any) -> list[list[str]]:
    """Every combination of the sweep's values, by Hydra's basic sweeper's own rules."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create(config_loader=hydra.config_loader)
    parsed = []
    for override in overrides:
        try:
            parsed.extend(parser.parse_overrides([override]))
        except HydraException:
            raise UserError(f"cannot parse override '{override}'; write key=value or a sweep, e.g. seed=0,1,2 or method=ew,uw") from None
    try:
        [jobs] = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except HydraException as e:
        raise UserError(f"unsupported sweep: {_first_line(e)}; list the values, e.g. seed=0,1,2 or seed=range(0,3)") from None
    return jobs


def _compose_sweep(hydra: Any, overrides: list[str], launcher: Sequence[str]) -> Any:
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    try:
        return hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
    except (HydraException, OmegaConfBaseException) as e:
        options = hydra.config_loader.get_group_options("hydra/launcher")
        choice = next((o.split("=", 1)[1] for o in launcher if o.startswith("hydra/launcher=")), None)
        if choice is not None and choice not in options:
            raise UserError(f"unknown launcher '{choice}'; options: {', '.join(options)}") from None
        detail = _first_line(e) + (f" ({_first_line(e.__cause__)})" if e.__cause__ is not None else "")
        raise UserError(f"bad launcher setting: {detail}") from None


def _describe(plan: Plan, log: Callable[[str], None]) -> None:
    settings = ", ".join(f"{k}={v}" for k, v in plan.settings.items() if v not in (None, {}, []))
    launcher = f"{plan.launcher} launcher" + (f" ({settings})" if settings else "")
    log(f"{len(plan.jobs)} job{'s' * (len(plan.jobs) != 1)}, {launcher}; nothing run (--dry-run)")
    for number, label in enumerate(labels(plan.jobs)):
        log(f"  #{number} {label}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
