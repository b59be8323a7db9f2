"""Load run records, group them into rows, aggregate seeds and contrast with single-task.

Only `run.json` is read: no torch, no numpy, no scipy (see stats.py for why), so that
`mtl compare` stays fast.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl.compare import stats
from mtl.errors import UserError
from mtl.records import PARADIGM, RUN_FILE, find_run_dirs, read_record
from mtl.tasks import METRIC_DIRECTION

KIND_ORDER = {"single": 0, "multitask": 1, "finetune": 2}
# Row fields a user may filter or sort on (besides task columns and delta_m).
DESCRIPTORS = ("data", "paradigm", "kind", "method", "arch", "strategy", "source", "train_size")
FILTER_KEYS = DESCRIPTORS + ("seed", "run_id", "backbone")
# Metrics not in mtl.tasks.METRIC_DIRECTION that are lower-is-better by common usage.
LOWER_IS_BETTER = {"loss", "error", "mse", "nll", "ece", "brier"}


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    run_id: str | None = None


@dataclass(frozen=True)
class TaskColumn:
    name: str
    metric: str
    higher_is_better: bool


@dataclass
class Contrast:
    """A row's task against the single-task baseline, signed so that positive = better.

    `gain` is the difference of means (row - single-task, negated for lower-is-better
    metrics) in the metric's units; low/high is its Welch 95% interval (None if either
    side has n < 2).
    """

    gain: float
    low: float | None
    high: float | None
    p_value: float | None

    @property
    def verdict(self) -> str:
        if self.low is None or self.high is None:
            return "undefined"
        if self.high < 0:
            return "negative transfer"
        if self.low > 0:
            return "positive transfer"
        return "not significant"


@dataclass
class Cell:
    """One task in one row: the seeds' values of the shown metric."""

    values: list[float]
    mean: float
    std: float | None
    interval: tuple[float, float] | None
    vs_single: Contrast | None = None
    best: bool = False

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass
class Row:
    data: str
    kind: str
    paradigm: str
    method: str | None
    arch: str | None
    strategy: str | None
    source: str | None
    train_size: int | None
    run_ids: list[str] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)
    cells: dict[str, Cell] = field(default_factory=dict)
    delta_m: float | None = None  # % vs single-task; positive = better
    delta_m_tasks: int = 0  # how many tasks Δm averages over
    baseline: Row | None = field(default=None, repr=False)

    def descriptor(self, key: str) -> Any:
        return getattr(self, key)

    @property
    def identity(self) -> tuple:
        """Everything that makes a row except the training size (for data-efficiency curves)."""
        return (self.data, self.kind, self.method, self.arch, self.strategy, self.source)


@dataclass
class Section:
    """The rows of one data set, with that data set's task columns."""

    data: str
    tasks: list[TaskColumn]
    rows: list[Row]

    def varying(self, key: str) -> bool:
        return len({row.descriptor(key) for row in self.rows}) > 1


@dataclass
class Comparison:
    sections: list[Section]
    skipped: list[Skipped]
    metric: str | None = None  # the --metric override, if any

    @property
    def rows(self) -> list[Row]:
        return [row for section in self.sections for row in section.rows]


# ---------------------------------------------------------------------------- loading


def load_runs(
    paths: Sequence[str | Path] = (), runs_dir: str | Path = "runs"
) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """Read every run under `paths` (run dirs, folders of runs, run.json files or globs).

    With no paths, reads every run under `runs_dir`. Returns the complete records and
    the skipped ones (unreadable, failed, interrupted, running) with the reason.
    """
    run_dirs = _resolve_run_dirs(paths, runs_dir)
    records, skipped = [], []
    for run_dir in run_dirs:
        try:
            record = read_record(run_dir)
        except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
            skipped.append(Skipped(str(run_dir), f"unreadable {RUN_FILE}: {_one_line(e)}"))
            continue
        status = record.get("status")
        if status != "complete":
            reason = f"status {status}"
            if record.get("error"):
                reason += f": {_one_line(record['error'])}"
            skipped.append(Skipped(str(run_dir), reason, record.get("run_id")))
        elif not isinstance(record.get("test"), dict) or not record.get("tasks"):
            reason = "incomplete: no test metrics"
            skipped.append(Skipped(str(run_dir), reason, record.get("run_id")))
        else:
            records.append(record)
    return records, skipped


def _resolve_run_dirs(paths: Sequence[str | Path], runs_dir: str | Path) -> list[Path]:
    if not paths:
        root = Path(runs_dir)
        if not root.exists():
            raise UserError(
                f"no runs found: '{root}' does not exist; "
                "run `mtl run ...` first, or pass run directories or --runs-dir"
            )
        found = find_run_dirs(root)
        if not found:
            raise UserError(
                f"no runs found under '{root}'; run `mtl run ...` first, or pass run directories"
            )
        return found
    found, seen = [], set()
    for raw in paths:
        text = str(raw)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matches or not Path(matches[0]).exists():
            raise UserError(
                f"path '{text}' does not exist; pass run directories, folders of runs or a glob"
            )
        for match in matches:
            path = Path(match)
            if path.is_file() and path.name == RUN_FILE:
                path = path.parent
            for run_dir in find_run_dirs(path) if path.is_dir() else []:
                if run_dir.resolve() not in seen:
                    seen.add(run_dir.resolve())
                    found.append(run_dir)
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise UserError(f"no runs found in {shown}; pass directories that contain {RUN_FILE}")
    return found


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())


# ---------------------------------------------------------------------------- filtering


def parse_filters(filters: Iterable[str]) -> dict[str, set[str]]:
    """`key=value` (value may be a comma list) -> {key: {values}}."""
    parsed: dict[str, set[str]] = {}
    for text in filters:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UserError(f"bad filter '{text}'; write key=value, e.g. --filter data=fruits")
        if key not in FILTER_KEYS:
            raise UserError(f"unknown filter key '{key}'; use one of {', '.join(FILTER_KEYS)}")
        parsed.setdefault(key, set()).update(v.strip() for v in value.split(","))
    return parsed


def _record_field(record: dict[str, Any], key: str) -> Any:
    data = record.get("data") or {}
    if key == "data":
        return data.get("name")
    if key == "train_size":
        return data.get("train_size")
    if key == "paradigm":
        return record.get("paradigm") or PARADIGM.get(record.get("kind"))
    if key == "strategy":
        return (record.get("finetune") or {}).get("strategy")
    if key == "source":
        return _source_label(record.get("source"))
    return record.get(key)


def _source_label(source: dict[str, Any] | None) -> str | None:
    if not source:
        return None
    if source.get("label"):
        return str(source["label"])
    parts = [str(source[k]) for k in ("data", "kind") if source.get(k)]
    return "/".join(parts) or str(source.get("run_id") or source.get("path"))


def _matches(record: dict[str, Any], wanted: dict[str, set[str]]) -> bool:
    return all(_filter_text(_record_field(record, key)) in values for key, values in wanted.items())


def _filter_text(value: Any) -> str:
    """How a field reads in --filter: a missing one (no source, no strategy) reads "none"."""
    return "none" if value is None else str(value)


# ---------------------------------------------------------------------------- grouping


def build_comparison(
    records: Sequence[dict[str, Any]],
    skipped: Sequence[Skipped] = (),
    *,
    filters: Iterable[str] = (),
    metric: str | None = None,
    sort_by: str | None = None,
) -> Comparison:
    """Group complete records into rows, aggregate seeds, contrast with single-task."""
    wanted = parse_filters(filters)
    selected = [r for r in records if _matches(r, wanted)]
    if not selected:
        if records and wanted:
            raise UserError(
                f"no runs match the filters ({len(records)} complete runs found); "
                "loosen or drop --filter"
            )
        raise UserError(
            f"no complete runs to compare ({_skip_summary(skipped)}); "
            "finish a run with `mtl run ...` or pass other run directories"
        )
    if metric is not None and not any(
        metric in values for r in selected for values in r["test"].values()
    ):
        recorded = sorted({m for r in selected for values in r["test"].values() for m in values})
        raise UserError(
            f"metric '{metric}' is not recorded by any selected run; "
            f"use one of {', '.join(recorded)}"
        )
    selected.sort(key=lambda r: str(r.get("run_dir", "")))
    by_data: dict[str, list[dict[str, Any]]] = {}
    for record in selected:
        by_data.setdefault(str(_record_field(record, "data")), []).append(record)
    sections = [_build_section(data, by_data[data], metric) for data in sorted(by_data)]
    comparison = Comparison(sections, list(skipped), metric)
    sort_rows(comparison, sort_by)
    return comparison


def _skip_summary(skipped: Sequence[Skipped]) -> str:
    """'3 skipped: 2 failed, 1 unreadable' — why there is nothing to compare, in one line."""
    if not skipped:
        return "none found"
    counts: dict[str, int] = {}
    for s in skipped:
        cause = s.reason.split(":")[0].removeprefix("status ").split(" ")[0]
        counts[cause] = counts.get(cause, 0) + 1
    return f"{len(skipped)} skipped: " + ", ".join(f"{n} {cause}" for cause, n in counts.items())


def _row_key(record: dict[str, Any]) -> tuple:
    # Single-task runs of one configuration merge into one row: no task in the key.
    return (
        record.get("kind"),
        record.get("method"),
        record.get("arch"),
        _record_field(record, "strategy"),
        _record_field(record, "source"),
        _record_field(record, "train_size"),
    )


def _build_section(data: str, records: list[dict[str, Any]], metric: str | None) -> Section:
    columns: dict[str, TaskColumn] = {}
    # Runs with the most tasks first: columns follow the order the data config declares them.
    for record in sorted(records, key=lambda r: -len(r["tasks"])):
        for spec in record["tasks"]:
            if spec["name"] not in columns:
                # A task that never records the --metric override keeps its primary metric.
                use_override = metric is not None and _has_metric(records, spec["name"], metric)
                shown = metric if use_override else spec["metric"]
                columns[spec["name"]] = TaskColumn(spec["name"], shown, _direction(spec, shown))
    rows: dict[tuple, Row] = {}
    values: dict[tuple, dict[str, list[float]]] = {}
    for record in records:
        key = _row_key(record)
        if key not in rows:
            kind, method, arch, strategy, source, train_size = key
            paradigm = record.get("paradigm") or PARADIGM.get(kind, "?")
            rows[key] = Row(data, kind, paradigm, method, arch, strategy, source, train_size)
            values[key] = {}
        row = rows[key]
        row.run_ids.append(str(record.get("run_id")))
        if record.get("seed") not in row.seeds:
            row.seeds.append(record.get("seed"))
        for spec in record["tasks"]:
            column = columns[spec["name"]]
            value = (record["test"].get(spec["name"]) or {}).get(column.metric)
            # NaN (a diverged run) would poison the mean: such a value is not counted in n.
            if isinstance(value, (int, float)) and math.isfinite(value):
                values[key].setdefault(column.name, []).append(float(value))
    for key, row in rows.items():
        for task, task_values in values[key].items():
            row.cells[task] = Cell(
                task_values,
                stats.mean(task_values),
                stats.sample_std(task_values),
                stats.mean_interval(task_values),
            )
    section = Section(data, list(columns.values()), list(rows.values()))
    _contrast_with_single(section)
    _mark_best(section)
    return section


def _has_metric(records: list[dict[str, Any]], task: str, metric: str) -> bool:
    return any(metric in (r["test"].get(task) or {}) for r in records)


def _direction(spec: dict[str, Any], metric: str) -> bool:
    if metric == spec.get("metric"):
        return bool(spec.get("higher_is_better", METRIC_DIRECTION.get(metric, True)))
    return METRIC_DIRECTION.get(metric, metric not in LOWER_IS_BETTER)


def _find_baseline(row: Row, singles: list[Row]) -> Row | None:
    """The single-task row of the same data set and training size, same method/arch if any."""
    candidates = [s for s in singles if s.train_size == row.train_size]
    for same in (
        lambda s: (s.method, s.arch) == (row.method, row.arch),
        lambda s: s.arch == row.arch,
    ):
        matching = [s for s in candidates if same(s)]
        if matching:
            return matching[0]
    return candidates[0] if len(candidates) == 1 else None


def _contrast_with_single(section: Section) -> None:
    singles = [row for row in section.rows if row.kind == "single"]
    for row in section.rows:
        if row.kind == "single":
            continue
        baseline = row.baseline = _find_baseline(row, singles)
        if baseline is None:
            continue
        relative = []
        for column in section.tasks:
            cell, base = row.cells.get(column.name), baseline.cells.get(column.name)
            if cell is None or base is None:
                continue
            sign = 1.0 if column.higher_is_better else -1.0
            test = stats.welch(cell.values, base.values)
            low, high = test.low, test.high
            if sign < 0 and low is not None:
                low, high = -high, -low
            cell.vs_single = Contrast(sign * test.difference, low, high, test.p_value)
            if base.mean != 0:
                # |base|: a baseline can be negative (R² of a poor regression), and dividing by it
                # would flip the sign of the gain
                relative.append(sign * (cell.mean - base.mean) / abs(base.mean))
        if relative:
            row.delta_m = 100.0 * stats.mean(relative)
            row.delta_m_tasks = len(relative)


def _mark_best(section: Section) -> None:
    """Best mean per task among rows of the same training size (more data always wins)."""
    for column in section.tasks:
        by_size: dict[Any, list[Cell]] = {}
        for row in section.rows:
            if column.name in row.cells:
                by_size.setdefault(row.train_size, []).append(row.cells[column.name])
        for cells in by_size.values():
            pick = max if column.higher_is_better else min
            best = pick(cell.mean for cell in cells)
            for cell in cells:
                cell.best = cell.mean == best and len(cells) > 1


# ---------------------------------------------------------------------------- sorting


def sort_columns(comparison: Comparison) -> list[str]:
    tasks = {column.name for section in comparison.sections for column in section.tasks}
    return list(DESCRIPTORS[1:]) + ["delta_m"] + sorted(tasks)


def sort_rows(comparison: Comparison, sort_by: str | None) -> None:
    """Default order: training size, then single-task, multitask, fine-tune.

    A task column or delta_m sorts best first; a descriptor sorts ascending.
    """
    for section in comparison.sections:
        section.rows.sort(key=_default_order)
    if sort_by is None:
        return
    if sort_by not in sort_columns(comparison):
        raise UserError(
            f"unknown sort column '{sort_by}'; use one of {', '.join(sort_columns(comparison))}"
        )
    for section in comparison.sections:
        column = next((c for c in section.tasks if c.name == sort_by), None)
        if column is not None:
            sign = -1.0 if column.higher_is_better else 1.0
            section.rows.sort(
                key=lambda r: (0, sign * r.cells[sort_by].mean) if sort_by in r.cells else (1, 0.0)
            )
        elif sort_by == "delta_m":
            # The single-task row is the baseline (0); rows without a baseline go last.
            section.rows.sort(
                key=lambda r: (r.kind != "single" and r.delta_m is None, -(r.delta_m or 0.0))
            )
        else:
            section.rows.sort(key=lambda r: _sortable(r.descriptor(sort_by)))


def _sortable(value: Any) -> tuple:
    """None last, numbers by value (not as text: 1000 after 200)."""
    number = value if isinstance(value, (int, float)) else 0
    return (value is None, number, str(value))


def _default_order(row: Row) -> tuple:
    return (
        row.train_size if row.train_size is not None else -1,
        KIND_ORDER.get(row.kind, 9),
        str(row.method),
        str(row.arch),
        str(row.strategy or ""),
        str(row.source or ""),
    )
