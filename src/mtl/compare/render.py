"""Render a Comparison as a rich table, Markdown, CSV, JSON or LaTeX.

Human formats (table, md, latex) show display units (accuracy in %) and the legend;
machine formats (csv, json) carry raw metric values and every statistic.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any, Callable

from mtl.compare.aggregate import Cell, Comparison, Row, Section, TaskColumn
from mtl.errors import UserError

FORMATS = ("table", "md", "csv", "json", "latex")

LEGEND = {
    "joint": "tasks learned together; no source and no target: each task helps the others",
    "sequential": "trained on a source, then fine-tuned on the target (the row names its source)",
    "none": "one task alone (the single-task baseline)",
}
DELTA_M_NOTE = (
    "Δm% = mean over tasks of (−1)^l · (M − M_single) / M_single × 100, l = 1 where lower "
    "is better (Maninis et al. 2019); positive = better than single-task."
)
GAIN_NOTE = (
    "gain = row mean − single-task mean (same data and training size), sign flipped where "
    "lower is better: positive = better. ▼ negative transfer: its Welch 95% interval lies "
    "entirely below 0; ▲ significant: entirely above 0; n.s.: the interval contains 0; "
    "undefined when either side has n < 2."
)
CELL_NOTE = (
    "mean ± sample std over n seeds; accuracy in %; ↑/↓ higher/lower is better; "
    "best per task at each training size in bold."
)
VERDICT_MARK = {
    "negative transfer": "▼ negative transfer",
    "positive transfer": "▲ significant",
    "not significant": "n.s.",
    "undefined": "interval undefined (n<2)",
}
# The terminal table is narrower: the verdict as its mark alone (the legend spells it out).
SHORT_VERDICT_MARK = {**VERDICT_MARK, "negative transfer": "▼", "positive transfer": "▲", "undefined": "n<2"}
HEADERS = {
    "paradigm": "Paradigm",
    "kind": "Kind",
    "method": "Method",
    "arch": "Arch",
    "strategy": "Strategy",
    "source": "Source",
    "train_size": "Train n",
}
OPTIONAL_DESCRIPTORS = ("method", "arch", "strategy", "train_size")


def render(
    comparison: Comparison, fmt: str = "table", *, show_ci: bool = False, show_pvalue: bool = False
) -> str:
    """The comparison as text in `fmt` (one of FORMATS)."""
    check_format(fmt)
    if fmt == "csv":
        return to_csv(comparison)
    if fmt == "json":
        return to_json(comparison)
    if fmt == "md":
        return to_markdown(comparison, show_ci, show_pvalue)
    if fmt == "latex":
        return to_latex(comparison, show_ci, show_pvalue)
    return to_text_table(comparison, show_ci, show_pvalue)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------------------- display text


def display_scale(column: TaskColumn) -> float:
    return 100.0 if column.metric == "accuracy" else 1.0


def _number(value: float, column: TaskColumn, signed: bool = False) -> str:
    digits = 1 if display_scale(column) == 100.0 else 3
    text = f"{value * display_scale(column):{'+' if signed else ''}.{digits}f}"
    return text.replace("-", "−")


def column_header(column: TaskColumn) -> str:
    arrow = "↑" if column.higher_is_better else "↓"
    unit = ", %" if display_scale(column) == 100.0 else ""
    return f"{column.name} ({column.metric} {arrow}{unit})"


def cell_lines(
    cell: Cell, column: TaskColumn, show_ci: bool, show_pvalue: bool, marks: dict[str, str] = VERDICT_MARK
) -> list[str]:
    """The lines of one task cell, in plain Unicode; each format joins and escapes them."""
    spread = f" ± {_number(cell.std, column)}" if cell.std is not None else ""
    lines = [f"{_number(cell.mean, column)}{spread} (n={cell.n})"]
    if show_ci:
        if cell.interval is None:
            lines.append("95% CI undefined (n<2)")
        else:
            low, high = (_number(v, column) for v in cell.interval)
            lines.append(f"95% CI [{low}, {high}]")
    contrast = cell.vs_single
    if contrast is not None:
        unit = " pp" if display_scale(column) == 100.0 else ""
        gain = f"gain {_number(contrast.gain, column, signed=True)}{unit}"
        if show_ci and contrast.low is not None:
            low, high = (_number(v, column, signed=True) for v in (contrast.low, contrast.high))
            gain += f" [{low}, {high}]"
        gain += f", {marks[contrast.verdict]}"
        if show_pvalue and contrast.p_value is not None:
            gain += f", p={contrast.p_value:.3g}"
        lines.append(gain)
    return lines


def delta_m_text(row: Row, section: Section) -> str:
    if row.kind == "single":
        return "baseline"
    if row.delta_m is None:
        return "—"
    text = f"{row.delta_m:+.2f}".replace("-", "−")
    with_tasks = sum(1 for c in section.tasks if c.name in row.cells)
    if row.delta_m_tasks < with_tasks:
        text += f" ({row.delta_m_tasks}/{with_tasks} tasks)"
    return text


def shown_descriptors(section: Section) -> list[str]:
    """Always paradigm and kind; source when any row has one; the rest when they vary."""
    keys = ["paradigm", "kind"]
    keys += [k for k in ("method", "arch", "strategy") if section.varying(k)]
    if any(row.source for row in section.rows):
        keys.append("source")
    if section.varying("train_size"):
        keys.append("train_size")
    return keys


def section_caption(section: Section) -> str:
    """The descriptors that are the same on every row, so the table need not repeat them."""
    parts = [f"data {section.data}"]
    for key in OPTIONAL_DESCRIPTORS:
        values = {row.descriptor(key) for row in section.rows}
        if len(values) == 1 and None not in values:
            name = "train n" if key == "train_size" else key
            parts.append(f"{name} {values.pop()}")
    runs = sum(len(row.run_ids) for row in section.rows)
    parts.append(f"{runs} runs")
    return " · ".join(parts)


def _descriptor_text(row: Row, key: str) -> str:
    value = row.descriptor(key)
    return "—" if value is None else str(value)


def _grid(section: Section, show_ci: bool, show_pvalue: bool) -> tuple[list[str], list[list]]:
    """Header and body of a section; a task cell is (lines, best) or None when absent."""
    keys = shown_descriptors(section)
    header = [HEADERS[k] for k in keys] + [column_header(c) for c in section.tasks] + ["Δm %"]
    body = []
    for row in section.rows:
        line: list[Any] = [_descriptor_text(row, k) for k in keys]
        for column in section.tasks:
            cell = row.cells.get(column.name)
            if cell is None:
                line.append(None)
            else:
                line.append((cell_lines(cell, column, show_ci, show_pvalue), cell.best))
        line.append(delta_m_text(row, section))
        body.append(line)
    return header, body


NOTES = (CELL_NOTE, GAIN_NOTE, DELTA_M_NOTE)


def skipped_heading(comparison: Comparison) -> str:
    return f"skipped {len(comparison.skipped)} runs (not averaged in):"


# ---------------------------------------------------------------------------- rich table


def rich_renderables(comparison: Comparison, show_ci: bool = False, show_pvalue: bool = False):
    """Tables and legend as rich renderables, for printing to a terminal."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    for section in comparison.sections:
        keys = shown_descriptors(section)
        sized = "train_size" in keys
        table = Table(title=section.data, caption=section_caption(section), show_lines=True)
        table.add_column("Run", overflow="fold")
        if sized:
            table.add_column(HEADERS["train_size"], justify="right")
        for column in section.tasks:
            table.add_column(column_header(column).replace(" (", "\n(", 1), overflow="fold")
        table.add_column("Δm %", justify="right")
        for row in section.rows:
            cells = [_run_text(row, keys, Text)] + ([_descriptor_text(row, "train_size")] if sized else [])
            for column in section.tasks:
                cell = row.cells.get(column.name)
                lines = cell_lines(cell, column, show_ci, show_pvalue, SHORT_VERDICT_MARK) if cell else None
                cells.append(None if cell is None else (lines, cell.best))
            cells.append(delta_m_text(row, section))
            table.add_row(*(_rich_cell(value, Text) for value in cells))
        out.append(table)
    footer = Text()
    for paradigm, meaning in LEGEND.items():
        footer.append(f"{paradigm}", style="bold")
        footer.append(f" — {meaning}\n")
    for note in NOTES:
        footer.append(note + "\n", style="dim")
    if comparison.skipped:
        footer.append(skipped_heading(comparison) + "\n", style="yellow")
        for s in comparison.skipped:
            footer.append(f"  {s.path}: {s.reason}\n", style="yellow")
    out.append(footer)
    return out


def _run_text(row: Row, keys: list[str], text_type: Any) -> Any:
    """What a row is, one fact per line (narrower than a column each): paradigm, kind, then
    the descriptors that vary, and the source a fine-tune started from."""
    text = text_type(row.paradigm, style="bold")
    text.append(f"\n{row.kind}")
    for key in ("method", "arch"):
        if key in keys:
            text.append(f"\n{key} {_descriptor_text(row, key)}")
    if "strategy" in keys and row.strategy:
        text.append(f"\n{row.strategy}")
    if row.source:
        text.append(f"\n← {row.source}", style="dim")
    return text


def print_rich(console: Any, renderables: list[Any]) -> None:
    """Print the comparison; where the output is no terminal (a log, a pipe), at the tables'
    natural width rather than wrapped at rich's default of 80 columns."""
    if not console.is_terminal:
        unbounded = console.options.update(max_width=10_000)
        console.width = max([console.width, *(console.measure(r, options=unbounded).maximum for r in renderables[:-1])])
    for renderable in renderables:
        console.print(renderable, soft_wrap=False)  # soft wrap would also drop the titles' centring


def _rich_cell(value: Any, text_type: Any) -> Any:
    if value is None:
        return text_type("—", style="dim")
    if isinstance(value, str):
        return text_type(value)
    if not isinstance(value, tuple):
        return value  # already rich text
    lines, best = value
    text = text_type(lines[0], style="bold green" if best else "")
    for line in lines[1:]:
        style = "bold red" if "▼" in line else "dim"
        text.append("\n" + line, style=style)
    return text


def to_text_table(comparison: Comparison, show_ci: bool, show_pvalue: bool) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None, soft_wrap=True)
    for renderable in rich_renderables(comparison, show_ci, show_pvalue):
        console.print(renderable)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- markdown


def _text_cells(line: list, escape: Callable[[str], str], bold: Callable[[str], str], missing: str) -> list[str]:
    """One grid row as text cells: a task cell's lines joined by "; ", its first line in bold
    where it is the best value of its column."""
    cells = []
    for value in line:
        if value is None:
            cells.append(missing)
        elif isinstance(value, str):
            cells.append(escape(value))
        else:
            lines, best = value
            first = escape(lines[0])
            cells.append("; ".join([bold(first) if best else first, *map(escape, lines[1:])]))
    return cells


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(comparison: Comparison, show_ci: bool, show_pvalue: bool) -> str:
    out = []
    for section in comparison.sections:
        header, body = _grid(section, show_ci, show_pvalue)
        out += [f"### {section.data}", "", f"_{section_caption(section)}_", ""]
        out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        for line in body:
            cells = _text_cells(line, _md_escape, lambda text: f"**{text}**", "—")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out += [f"- **{paradigm}** — {meaning}" for paradigm, meaning in LEGEND.items()]
    out += [""] + [f"{note}  " for note in NOTES]  # two spaces: a Markdown line break
    if comparison.skipped:
        out += ["", skipped_heading(comparison)]
        out += [f"- `{s.path}`: {s.reason}" for s in comparison.skipped]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- LaTeX

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_UNICODE = {
    "±": r"$\pm$",
    "−": r"$-$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "▼": r"$\downarrow$",
    "▲": r"$\uparrow$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "—": "---",
    "·": r"$\cdot$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, _LATEX_UNICODE.get(ch, ch)) for ch in text)


def to_latex(comparison: Comparison, show_ci: bool, show_pvalue: bool) -> str:
    legend = " ".join(latex_escape(f"{p} — {meaning}.") for p, meaning in LEGEND.items())
    notes = " ".join(latex_escape(note) for note in NOTES)
    out = []
    for section in comparison.sections:
        header, body = _grid(section, show_ci, show_pvalue)
        out += [r"\begin{table}[ht]", r"\centering", r"\small"]
        out.append(r"\begin{tabular}{" + "l" * len(header) + "}")
        out.append(r"\hline")
        out.append(" & ".join(latex_escape(h) for h in header) + r" \\")
        out.append(r"\hline")
        for line in body:
            cells = _text_cells(line, latex_escape, lambda text: rf"\textbf{{{text}}}", "---")
            out.append(" & ".join(cells) + r" \\")
        out += [r"\hline", r"\end{tabular}"]
        caption = f"{latex_escape(section_caption(section))}. {notes} {legend}"
        out += [rf"\caption{{{caption}}}", r"\end{table}", ""]
    for skipped in comparison.skipped:
        out.append(f"% skipped {skipped.path}: {skipped.reason}".replace("\n", " "))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- CSV and JSON

CSV_FIELDS = (
    "data", "paradigm", "kind", "method", "arch", "strategy", "source", "train_size",
    "runs", "seeds", "task", "metric", "higher_is_better", "n", "mean", "std",
    "ci_low", "ci_high", "best", "gain", "gain_low", "gain_high", "p_value", "verdict",
    "delta_m",
)  # fmt: skip


def _cell_record(cell: Cell, column: TaskColumn) -> dict[str, Any]:
    contrast = cell.vs_single
    return {
        "metric": column.metric,
        "higher_is_better": column.higher_is_better,
        "n": cell.n,
        "values": cell.values,
        "mean": cell.mean,
        "std": cell.std,
        "ci_low": cell.interval[0] if cell.interval else None,
        "ci_high": cell.interval[1] if cell.interval else None,
        "best": cell.best,
        "gain": contrast.gain if contrast else None,
        "gain_low": contrast.low if contrast else None,
        "gain_high": contrast.high if contrast else None,
        "p_value": contrast.p_value if contrast else None,
        "verdict": contrast.verdict if contrast else None,
    }


def _row_record(row: Row) -> dict[str, Any]:
    return {
        "data": row.data,
        "paradigm": row.paradigm,
        "kind": row.kind,
        "method": row.method,
        "arch": row.arch,
        "strategy": row.strategy,
        "source": row.source,
        "train_size": row.train_size,
        "runs": len(row.run_ids),
        "seeds": row.seeds,
    }


def to_csv(comparison: Comparison) -> str:
    """Long format: one line per (row, task), every statistic in raw metric units."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for section in comparison.sections:
        for row in section.rows:
            for column in section.tasks:
                cell = row.cells.get(column.name)
                if cell is None:
                    continue
                line = _row_record(row) | _cell_record(cell, column)
                line["seeds"] = " ".join(str(s) for s in row.seeds)
                line["task"] = column.name
                line["delta_m"] = row.delta_m
                writer.writerow({k: "" if v is None else v for k, v in line.items()})
    return buffer.getvalue()


def to_dict(comparison: Comparison) -> dict[str, Any]:
    sections = []
    for section in comparison.sections:
        rows = []
        for row in section.rows:
            record = _row_record(row)
            record["run_ids"] = row.run_ids
            record["delta_m"] = row.delta_m
            record["delta_m_tasks"] = row.delta_m_tasks
            record["baseline"] = _row_record(row.baseline) if row.baseline else None
            record["cells"] = {
                column.name: _cell_record(row.cells[column.name], column)
                for column in section.tasks
                if column.name in row.cells
            }
            rows.append(record)
        tasks = [asdict(column) for column in section.tasks]
        sections.append({"data": section.data, "tasks": tasks, "rows": rows})
    return {
        "metric_override": comparison.metric,
        "delta_m_definition": DELTA_M_NOTE,
        "gain_definition": GAIN_NOTE,
        "legend": LEGEND,
        "sections": sections,
        "skipped": [asdict(s) for s in comparison.skipped],
    }


def to_json(comparison: Comparison) -> str:
    return json.dumps(to_dict(comparison), indent=2, ensure_ascii=False) + "\n"
