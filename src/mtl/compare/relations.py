"""Task relations beside the accuracies (`mtl compare --diagnostics`).

For each comparison row, each pair of tasks: the mean over the row's seeds of the last epoch's
diagnostics (see mtl/diagnostics.py): gradient cosine, gradient-magnitude similarity, the
fraction of steps with conflicting gradients, and the lookahead affinity both ways. Reads
run.json only (no torch).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from mtl.compare import stats
from mtl.compare.aggregate import Comparison, Row, Section
from mtl.compare.render import HEADERS, _descriptor_text, _md_escape, latex_escape, shown_descriptors

NOTE = (
    "Task relations: last epoch, mean over seeds (n). cos: cosine of the two tasks' gradients on the "
    "shared parameters (> 0 they agree, < 0 they pull apart); GMS: gradient-magnitude similarity "
    "(1 = equal norms); conflicts: share of steps with cos < 0; affinity a→b: 1 − L_b after a "
    "lookahead step on a alone / L_b before (Fifty et al. 2021; > 0: a helps b)."
)


@dataclass
class PairRelation:
    data: str
    row: dict[str, Any]
    tasks: tuple[str, str]
    cosine: float | None
    magnitude_similarity: float | None
    conflict_fraction: float | None
    affinity_ab: float | None
    affinity_ba: float | None
    n: int


def task_relations(comparison: Comparison, records: Sequence[dict[str, Any]]) -> list[tuple[Section, list[tuple[Row, PairRelation]]]]:
    """Per section, one entry per (row, task pair) for rows whose runs recorded diagnostics."""
    by_id = {str(r.get("run_id")): r for r in records}
    out = []
    for section in comparison.sections:
        lines = []
        for row in section.rows:
            last = [by_id[i]["diagnostics"][-1] for i in row.run_ids if i in by_id and by_id[i].get("diagnostics")]
            for pair in _pairs(last):
                lines.append((row, _relation(section.data, row, pair, last)))
        if lines:
            out.append((section, lines))
    return out


def _pairs(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for entry in entries:
        for pair in entry.get("pairs", []):
            key = tuple(pair["tasks"])
            if key not in seen:
                seen.append(key)
    return seen


def _relation(data: str, row: Row, tasks: tuple[str, str], entries: list[dict[str, Any]]) -> PairRelation:
    def mean_of(values: list[Any]) -> float | None:
        numbers = [float(v) for v in values if isinstance(v, (int, float))]
        return stats.mean(numbers) if numbers else None

    pairs = [p for e in entries for p in e.get("pairs", []) if tuple(p["tasks"]) == tasks]
    affinity = {(a["from"], a["to"]): [] for e in entries for a in e.get("affinity", [])}
    for entry in entries:
        for a in entry.get("affinity", []):
            affinity[(a["from"], a["to"])].append(a["value"])
    a, b = tasks
    return PairRelation(
        data=data,
        row={"kind": row.kind, "method": row.method, "arch": row.arch, "strategy": row.strategy,
             "source": row.source, "train_size": row.train_size},  # fmt: skip
        tasks=tasks,
        cosine=mean_of([p.get("cosine") for p in pairs]),
        magnitude_similarity=mean_of([p.get("magnitude_similarity") for p in pairs]),
        conflict_fraction=mean_of([p.get("conflict_fraction") for p in pairs]),
        affinity_ab=mean_of(affinity.get((a, b), [])),
        affinity_ba=mean_of(affinity.get((b, a), [])),
        n=len(pairs),
    )


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return f"{100 * value:.0f}%"
    if kind == "affinity":
        return f"{value:+.2e}".replace("-", "−")
    return f"{value:+.3f}".replace("-", "−") if kind == "signed" else f"{value:.3f}"


def _grid(section: Section, lines: list[tuple[Row, PairRelation]]) -> tuple[list[str], list[list[str]]]:
    keys = shown_descriptors(section)
    header = [HEADERS[k] for k in keys] + ["Tasks a · b", "cos", "GMS", "conflicts", "affinity a→b", "affinity b→a", "n"]
    body = []
    for row, rel in lines:
        body.append(
            [_descriptor_text(row, k) for k in keys]
            + [
                f"{rel.tasks[0]} · {rel.tasks[1]}",
                _fmt(rel.cosine, "signed"),
                _fmt(rel.magnitude_similarity, "plain"),
                _fmt(rel.conflict_fraction, "percent"),
                _fmt(rel.affinity_ab, "affinity"),
                _fmt(rel.affinity_ba, "affinity"),
                str(rel.n),
            ]
        )
    return header, body


def rich_relations(relations) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    for section, lines in relations:
        header, body = _grid(section, lines)
        table = Table(title=f"{section.data}: task relations", show_lines=False)
        for name in header:
            table.add_column(name, overflow="fold")
        for line in body:
            cells = [Text(cell, style="bold red" if i == len(header) - 6 and cell.startswith("−") else "") for i, cell in enumerate(line)]
            table.add_row(*cells)
        out.append(table)
    if relations:
        out.append(Text(NOTE + "\n", style="dim"))
    return out


def relations_markdown(relations) -> str:
    out = []
    for section, lines in relations:
        header, body = _grid(section, lines)
        out += [f"### {section.data}: task relations", ""]
        out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        out += ["| " + " | ".join(_md_escape(c) for c in line) + " |" for line in body]
        out.append("")
    if relations:
        out.append(NOTE)
    return "\n".join(out) + "\n"


def relations_latex(relations) -> str:
    out = []
    for section, lines in relations:
        header, body = _grid(section, lines)
        out += [r"\begin{table}[ht]", r"\centering", r"\small", r"\begin{tabular}{" + "l" * len(header) + "}", r"\hline"]
        out.append(" & ".join(latex_escape(h) for h in header) + r" \\")
        out.append(r"\hline")
        out += [" & ".join(latex_escape(c) for c in line) + r" \\" for line in body]
        out += [r"\hline", r"\end{tabular}"]
        out += [rf"\caption{{{latex_escape(section.data + ': ' + NOTE)}}}", r"\end{table}", ""]
    return "\n".join(out) + "\n"


CSV_FIELDS = ("data", "kind", "method", "arch", "strategy", "source", "train_size", "task_a", "task_b",
              "cosine", "magnitude_similarity", "conflict_fraction", "affinity_ab", "affinity_ba", "n")  # fmt: skip


def relations_csv(relations) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for _, lines in relations:
        for _, rel in lines:
            line = {**relations_dict_entry(rel), **rel.row, "task_a": rel.tasks[0], "task_b": rel.tasks[1]}
            writer.writerow({k: "" if v is None else v for k, v in line.items()})
    return buffer.getvalue()


def relations_dict_entry(rel: PairRelation) -> dict[str, Any]:
    entry = asdict(rel)
    entry["tasks"] = list(rel.tasks)
    return entry


def relations_dicts(relations) -> list[dict[str, Any]]:
    return [relations_dict_entry(rel) for _, lines in relations for _, rel in lines]


def render_with_relations(comparison: Comparison, relations, fmt: str, show_ci: bool, show_pvalue: bool) -> str:
    """The comparison in `fmt` with the relations after it (json: under "relations"; csv: the
    relations alone, since one CSV holds one table)."""
    import json

    from mtl.compare.render import render, to_dict

    if fmt == "json":
        document = to_dict(comparison) | {"relations": relations_dicts(relations), "relations_definition": NOTE}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return relations_csv(relations)
    extra = relations_markdown(relations) if fmt == "md" else relations_latex(relations)
    return render(comparison, fmt, show_ci=show_ci, show_pvalue=show_pvalue) + "\n" + extra
