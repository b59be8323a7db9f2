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

console = Console()
errors = Console(stderr=True)


def guarded(work: Callable[[], None]) -> None:
    """Run `work`; a user's mistake becomes one line on stderr and a non-zero exit."""
    try:
        work()
    except UserError as e:
        # escaped: messages name overrides like data.tasks=[a,b], which are not rich markup
        errors.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None


def _run(kind: str, overrides: list[str] | None, source: str | None, resume: Path | None) -> None:
    def work() -> None:
        if resume is not None:
            if overrides or source:
                raise UserError("--resume continues a run exactly as it was configured; drop the overrides and --source")
            from mtl.train import resume as resume_run

            records = [resume_run(resume, console.print)]
        else:
            if kind == "finetune" and not source:
                raise UserError("missing --source: mtl run finetune --source CHECKPOINT_OR_RUN_DIR [OVERRIDES]")
            from mtl.config import compose

            extra = [f"source={_quote(source)}"] if source else []
            cfg = compose(kind, [*(overrides or []), *extra])
            from mtl.train import run

            records = run(cfg, console.print)
        from mtl.report import run_table

        for record in records:
            console.print(run_table(record))
            console.print(f"run: {record['run_dir'] if 'run_dir' in record else _run_dir(record)}")

    guarded(work)


def _run_dir(record: dict) -> str:
    return str(Path(record["config"]["runs_dir"]) / record["kind"] / record["run_id"])


def _quote(value: str) -> str:
    # Hydra's override grammar: quote so paths with '=' or spaces survive as one string.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


OverridesArg = typer.Argument(None, help=OVERRIDES_HELP, show_default=False)
ResumeOpt = typer.Option(None, "--resume", help="Continue an interrupted run (its directory) from its last checkpoint.")


@run_app.command("multitask")
def run_multitask(overrides: Optional[List[str]] = OverridesArg, resume: Optional[Path] = ResumeOpt) -> None:
    """All tasks of data=... jointly, from scratch (paradigm: joint)."""
    _run("multitask", overrides, None, resume)


@run_app.command("single")
def run_single(overrides: Optional[List[str]] = OverridesArg, resume: Optional[Path] = ResumeOpt) -> None:
    """One model per task (or per tasks=[...]), everything else the same (paradigm: none)."""
    _run("single", overrides, None, resume)


@run_app.command("finetune")
def run_finetune(
    overrides: Optional[List[str]] = OverridesArg,
    source: Optional[str] = typer.Option(None, "--source", help="Checkpoint file or run directory to start from."),
    resume: Optional[Path] = ResumeOpt,
) -> None:
    """Start from --source's backbone (and heads whose task and classes match), fine-tune on
    data=... (paradigm: sequential). Strategy: finetune=full|linear_probe|lp_ft|gradual|l2sp."""
    _run("finetune", overrides, source, resume)


@app.command("eval")
def evaluate(
    checkpoint: str = typer.Argument(..., help="A checkpoint file or a run directory (its best checkpoint)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="data=... to evaluate on another data set.", show_default=False),
) -> None:
    """Evaluate a checkpoint on a data set's test split and print the per-task table."""

    def work() -> None:
        data_cfg = data_dir = None
        if overrides:
            from mtl.config import compose

            cfg = compose("multitask", overrides)
            data_cfg, data_dir = cfg.data, cfg.data_dir
        from mtl.evaluate import evaluate as evaluate_checkpoint
        from mtl.report import run_table

        result = evaluate_checkpoint(checkpoint, data_cfg, data_dir or "data")
        console.print(run_table(result))
        if result["skipped_tasks"]:
            console.print(f"not evaluated (no matching head): {', '.join(result['skipped_tasks'])}")

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
