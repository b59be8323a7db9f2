"""Rich rendering of one run's results (no torch)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def run_table(record: dict[str, Any]) -> Table:
    """Per-task test metrics of a run (or an evaluation), beside the majority-class rate: the
    accuracy a model that learned nothing would reach."""
    kind = record.get("kind", "eval")
    paradigm = record.get("paradigm")
    title = f"{record.get('data', {}).get('name')} · {kind}"
    if paradigm:
        title += f" · paradigm: {paradigm}"
    source = record.get("source")
    if source:
        title += f" · source: {source.get('label')}"
    table = Table(title=title, title_justify="left")
    table.add_column("task")
    table.add_column("kind")
    table.add_column("metric")
    table.add_column("test", justify="right")
    table.add_column("majority class", justify="right")
    for task in record["tasks"]:
        values = record.get("test", {}).get(task["name"], {})
        primary = task["metric"]
        shown = f"{values[primary]:.3f}" if primary in values else "—"
        majority = record.get("data", {}).get("majority", {}).get(task["name"])
        table.add_row(task["name"], task["kind"], primary, shown, "—" if majority is None else f"{majority:.3f}")
    return table
