"""The `mtl` command line: argument parsing and printing only; the work is in `mtl.*`.

Nothing heavy is imported at module level: `mtl --help` and config errors never load torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from mtl.errors import UserError
from mtl_cli.compare_cmd import compare

OVERRIDES_HELP = (
    "Hydra overrides, e.g. data=objects seed=3 trainer.max_epochs=5 data.train_size=200 runs_dir=PATH "
    "(groups: data, model, arch, method, finetune, trainer, logger)."
)

app = typer.Typer(
    help="mtl: should these tasks be learned jointly (multitask), sequentially (fine-tune) or alone (single-task)? "
    "Runs all three fairly and compares per-task accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help="Train one experiment kind; writes runs/<kind>/<run-id>/.", no_args_is_help=True)
data_app = typer.Typer(help="Look at data sets: check one, preview its images.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.command("compare")(compare)
app.add_typer(data_app, name="data")

# soft_wrap: a long line (a checkpoint path, an error) stays one line in a log or a narrow terminal
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def guarded(work: Callable[[], None]) -> None:
    """Run `work`; a user's mistake becomes one line on stderr and a non-zero exit."""
    try:
        work()
    except UserError as e:
        # escaped: messages name overrides like data.tasks=[a,b], which are not rich markup
        errors.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None


def _run(
    kind: str, overrides: list[str] | None, source: str | None, resume: Path | None, multirun: bool, dry_run: bool
) -> None:
    def work() -> None:
        if dry_run and not multirun:
            raise UserError("--dry-run lists the jobs of a sweep: use it with -m")
        if resume is not None:
            if overrides or source or multirun:
                raise UserError("--resume continues a run exactly as it was configured; drop the overrides, --source and -m")
            from mtl.train import resume as resume_run

            records = [resume_run(resume, console.print)]
        else:
            if kind == "finetune" and not source:
                raise UserError("missing --source: mtl run finetune --source CHECKPOINT_OR_RUN_DIR [OVERRIDES]")
            from mtl.config import compose, quoted

            extra = [f"source={quoted(source)}"] if source else []
            if multirun:
                return _sweep(kind, [*(overrides or []), *extra], dry_run)
            cfg = compose(kind, [*(overrides or []), *extra])
            from mtl.train import run

            records = run(cfg, console.print)
        from mtl.report import run_table

        for record in records:
            console.print(run_table(record))
            console.print(f"run: {record['run_dir']}")

    guarded(work)


def _sweep(kind: str, overrides: list[str], dry_run: bool) -> None:
    from mtl.sweep import labels, sweep

    outcomes = sweep(kind, overrides, console.print, dry_run)
    for number, (outcome, label) in enumerate(zip(outcomes, labels([o.job for o in outcomes]))):
        if outcome.error:
            errors.print(f"[red]✗[/] #{number} {label}: {outcome.error}", highlight=False, soft_wrap=True)
        for run_dir, test in zip(outcome.run_dirs, outcome.tests):
            scores = " · ".join(f"{task} " + " ".join(f"{k} {v:.3f}" for k, v in values.items()) for task, values in test.items())
            console.print(f"[green]✓[/] #{number} {label} → {run_dir}  {scores}", highlight=False, soft_wrap=True)
    failed = sum(1 for o in outcomes if o.error)
    if failed:
        raise UserError(f"{failed} of {len(outcomes)} jobs failed; the others' runs are complete")


OverridesArg = typer.Argument(None, help=OVERRIDES_HELP, show_default=False)
ResumeOpt = typer.Option(None, "--resume", help="Continue an interrupted run (its directory) from its last checkpoint.")
MultirunOpt = typer.Option(
    False, "--multirun", "-m",
    help="Sweep: one run per combination of values (seed=0,1,2 method=ew,uw), started by "
    "hydra/launcher=basic (default, one after another), joblib, submitit_local or slurm.",
)  # fmt: skip
DryRunOpt = typer.Option(False, "--dry-run", help="With -m: check and list the sweep's jobs and launcher; run nothing.")


@run_app.command("multitask")
def run_multitask(
    overrides: Optional[List[str]] = OverridesArg,
    resume: Optional[Path] = ResumeOpt,
    multirun: bool = MultirunOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """All tasks of data=... jointly, from scratch (paradigm: joint)."""
    _run("multitask", overrides, None, resume, multirun, dry_run)


@run_app.command("single")
def run_single(
    overrides: Optional[List[str]] = OverridesArg,
    resume: Optional[Path] = ResumeOpt,
    multirun: bool = MultirunOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """One model per task (or per tasks=[...]), everything else the same (paradigm: none)."""
    _run("single", overrides, None, resume, multirun, dry_run)


@run_app.command("finetune")
def run_finetune(
    overrides: Optional[List[str]] = OverridesArg,
    source: Optional[str] = typer.Option(None, "--source", help="Checkpoint file or run directory to start from."),
    resume: Optional[Path] = ResumeOpt,
    multirun: bool = MultirunOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Start from --source's backbone (and heads whose task and classes match), fine-tune on
    data=... (paradigm: sequential). Strategy: finetune=full|linear_probe|lp_ft|gradual|l2sp."""
    _run("finetune", overrides, source, resume, multirun, dry_run)


@app.command("eval")
def evaluate(
    checkpoint: str = typer.Argument(..., help="A checkpoint file or a run directory (its best checkpoint)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="data=... to evaluate on another data set.", show_default=False),
) -> None:
    """Evaluate a checkpoint on a data set's test split and print the per-task table."""

    def work() -> None:
        from mtl.config import compose

        cfg = compose("multitask", overrides or [])  # checks the overrides; gives data_dir
        keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides or []]
        # data=NAME picks another data set; data.* alone adjusts the checkpoint's own one
        data_cfg = cfg.data if "data" in keys else None
        data_overrides = [o.lstrip("+~")[len("data.") :] for o, k in zip(overrides or [], keys) if k.startswith("data.")]
        from mtl.evaluate import evaluate as evaluate_checkpoint
        from mtl.report import run_table

        result = evaluate_checkpoint(checkpoint, data_cfg, cfg.data_dir, data_overrides=data_overrides)
        console.print(run_table(result))
        if result["skipped_tasks"]:
            console.print(f"not evaluated (no matching head): {', '.join(result['skipped_tasks'])}")

    guarded(work)


@app.command("study")
def study(
    name: str = typer.Argument(..., help="A study in conf/study/ (e.g. fruits-to-objects) or a path to a study .yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Overrides for every run, e.g. trainer.max_epochs=2.", show_default=False),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Number of seeds (default: the study's)."),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="Target training sizes, e.g. 60,300 (default: the study's)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Studies live in RUNS_DIR/studies/NAME/."),
) -> None:
    """Run a whole comparison (runs × training sizes × seeds; what is missing only), then
    print `mtl compare` over exactly its runs and write the plot beside them."""

    def work() -> None:
        from mtl.compare import print_rich, rich_renderables
        from mtl.study import compare_study, load_study, run_study

        size_list = None
        if sizes:
            try:
                size_list = [None if s.strip() in ("full", "null") else int(s) for s in sizes.split(",")]
            except ValueError:
                raise UserError(f"--sizes takes numbers separated by commas (or 'full'), got '{sizes}'") from None
        spec = load_study(name, runs_dir, seeds, size_list, overrides or [])
        run_study(spec, console.print)
        print_rich(console, rich_renderables(compare_study(spec)))
        console.print(f"study: {spec.home} (comparison.md, comparison.png)")

    guarded(work)


@data_app.command("preview")
def data_preview(
    overrides: Optional[List[str]] = typer.Argument(None, help="data=fruits|objects|images_csv|digits and data.* overrides.", show_default=False),
    out: Path = typer.Option(Path("preview.png"), "--out", help="PNG file to write."),
    n: int = typer.Option(36, "--n", help="How many examples."),
) -> None:
    """Write a labelled grid of training examples: what the network sees."""

    def work() -> None:
        from mtl.config import compose
        from mtl.data.build import preview_data

        cfg = compose("multitask", overrides or [])
        path = preview_data(cfg.data, cfg.data_dir, out, n)
        console.print(f"wrote {path}")

    guarded(work)


@data_app.command("check")
def data_check(
    overrides: Optional[List[str]] = typer.Argument(
        None, help="data=images_csv data.manifest=PATH, data=tabular_csv data.file=PATH data.tasks=[...], data.* overrides.",
        show_default=False,
    ),
) -> None:
    """Validate a data set without training (every problem, with its CSV line) and summarise it:
    rows, splits, per-task classes, balance and labelled counts, image sizes seen."""

    def work() -> None:
        from mtl.config import compose
        from mtl.data.build import build_data
        from mtl.data.check import summary

        cfg = compose("multitask", overrides or [])
        console.print(summary(build_data(cfg.data, cfg.data_dir, list(cfg.tasks) if cfg.tasks else None)))

    guarded(work)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
