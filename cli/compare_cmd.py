"""`mtl compare`: thin layer over mtl.compare (parse, call, print). Never imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mtl.errors import UserError

RunDirs = Annotated[
    Optional[list[str]],
    typer.Argument(
        metavar="RUN_DIRS",
        help="Run directories, folders of runs or globs (default: every run in --runs-dir).",
    ),
]
Filters = Annotated[
    Optional[list[str]],
    typer.Option(
        "--filter",
        metavar="KEY=VALUE",
        help="key=value, repeatable, value may be a,b. Keys: data, kind, paradigm, method, "
        "arch, strategy, source, train_size, seed, run_id, backbone.",
    ),
]


def compare(
    run_dirs: RunDirs = None,
    runs_dir: Annotated[
        Path, typer.Option(metavar="DIR", help="Where runs live when no RUN_DIRS are given.")
    ] = Path("runs"),
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", metavar="FORMAT", help="table, md, csv, json or latex."),
    ] = "table",
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", metavar="FILE", help="Write the chosen format to FILE."),
    ] = None,
    sort_by: Annotated[
        Optional[str],
        typer.Option(
            metavar="COLUMN", help="Sort rows by a task (best first), delta_m, kind, train_size..."
        ),
    ] = None,
    filters: Filters = None,
    metric: Annotated[
        Optional[str],
        typer.Option(metavar="NAME", help="Show this metric instead of each task's primary one."),
    ] = None,
    ci: Annotated[bool, typer.Option("--ci", help="Show 95% Student t intervals.")] = False,
    pvalue: Annotated[bool, typer.Option("--pvalue", help="Show Welch t-test p-values.")] = False,
    diagnostics: Annotated[
        bool,
        typer.Option(
            "--diagnostics",
            help="Also show task relations (gradient cosine, magnitude similarity, conflicts, affinity) "
            "of runs made with diagnostics=true; with --format csv, the relations table alone.",
        ),
    ] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            metavar="FILE.png", help="Write bars per task (and data-efficiency curves) there."
        ),
    ] = None,
) -> None:
    """Compare runs: per-task mean ± std over seeds, Δm% and transfer against single-task."""
    try:
        from mtl import compare as lib

        lib.check_format(fmt)  # before reading anything: a typo should fail fast
        records, skipped = lib.load_runs(run_dirs or [], runs_dir)
        comparison = lib.build_comparison(
            records, skipped, filters=filters or [], metric=metric, sort_by=sort_by
        )
        relations = None
        if diagnostics:
            from mtl.compare.relations import render_with_relations, rich_relations, task_relations

            relations = task_relations(comparison, records)
            if not relations:
                _say("no compared run recorded diagnostics; make runs with diagnostics=true", stderr=True)

        def text() -> str:
            if relations is None:
                return lib.render(comparison, fmt, show_ci=ci, show_pvalue=pvalue)
            return render_with_relations(comparison, relations, fmt, ci, pvalue)

        if output is not None:
            _write(output, text())
            rows = len(comparison.rows)
            _say(f"wrote {fmt} to {output} ({rows} rows, {len(skipped)} runs skipped)")
        elif fmt == "table":
            console = _console()
            lib.print_rich(console, lib.rich_renderables(comparison, show_ci=ci, show_pvalue=pvalue))
            for renderable in rich_relations(relations) if relations else []:
                console.print(renderable)
        else:
            # Machine-readable text goes out verbatim, and without importing rich (~70 ms).
            typer.echo(text(), nl=False)
            if fmt == "csv":  # the one format with no place for skipped runs
                for s in skipped:
                    _say(f"skipped {s.path}: {s.reason}", stderr=True)
        if plot is not None:
            _say(f"wrote plot to {lib.plot(comparison, plot)}")
    except UserError as e:
        _say(f"error: {e}", stderr=True)
        raise typer.Exit(e.exit_code) from None


def _console(stderr: bool = False):
    from rich.console import Console

    # soft_wrap: a one-line message stays one line however narrow the terminal.
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def _say(message: str, stderr: bool = False) -> None:
    _console(stderr).print(message, markup=False)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        message = f"cannot write '{path}': {e.strerror}; choose a writable --output"
        raise UserError(message) from None
