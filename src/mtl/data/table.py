"""What a user's CSV file means: its tasks, their kinds and classes, the split of every row,
and every problem in it, each with its line number.

Shared by the image manifest source (images.py) and the tabular source (tabular.py). Reads
with the standard csv module: files are small next to the images they list, and a table
library would add a dependency for no gain here.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from mtl.errors import UserError
from mtl.tasks import KINDS

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# An integer-valued column with more distinct values than this is inferred to be a regression
# target (an age, a count); with fewer, a class label (a digit, a rating). Declare the kind
# (data.tasks.NAME.kind) to decide otherwise.
MAX_INFERRED_CLASSES = 20
# Problems listed in one error; the rest are counted (mtl data check lists the same ones).
SHOWN_PROBLEMS = 50


@dataclass(order=True)
class Problem:
    line: int  # CSV line: 1 is the header, 2 the first row
    message: str


class DataProblems(UserError):
    """Everything wrong with a data file, reported at once."""

    def __init__(self, name: str, path: Path | str, problems: list[Problem]):
        problems = sorted(problems)
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        lines = [f"data '{name}': {count} in {path}; fix them and try again (`mtl data check` lists them without training):"]
        lines += [f"  line {p.line}: {p.message}" for p in problems[:SHOWN_PROBLEMS]]
        if len(problems) > SHOWN_PROBLEMS:
            lines.append(f"  … and {len(problems) - SHOWN_PROBLEMS} more")
        super().__init__("\n".join(lines))


@dataclass
class Table:
    """A CSV file as text cells, with each row's line number."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def column(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [row[i] for row in self.rows]


def read_table(path: str | Path, what: str, problems: list[Problem]) -> Table:
    """Read a CSV (UTF-8, a BOM allowed); ragged rows and repeated column names are problems."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; give the path of your CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows, lines, line = [], [], reader.line_num
            for row in reader:
                start, line = line + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue  # blank lines separate nothing
                if len(row) != len(header):
                    problems.append(Problem(start, f"{len(row)} fields, the header has {len(header)}"))
                    continue
                rows.append([cell.strip() for cell in row])
                lines.append(start)
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{what} {path} is not a readable CSV file ({e}); save it as UTF-8 CSV") from None
    if not header or not any(header):
        raise UserError(f"{what} {path} is empty; its first line must name the columns")
    for name, n in Counter(header).items():
        if n > 1:
            problems.append(Problem(1, f"column '{name}' appears {n} times; give columns unique names"))
    if not rows:
        problems.append(Problem(1, "the file has a header but no rows"))
    return Table(path, header, rows, lines)


# ---------------------------------------------------------------------------- tasks


def task_specs(
    table: Table, declared: Any, not_tasks: Iterable[str], problems: list[Problem], required: bool = False
) -> dict[str, dict[str, Any]]:
    """The data config's tasks, completed from the table: name -> {kind, classes, metric, column}.

    `declared` is None (every column but `not_tasks`), a list of column names (kinds inferred),
    or a mapping name -> {kind, classes, metric, column}, any of them left out to be inferred.
    """
    every_column = declared is None
    if every_column:
        if required:
            raise UserError(
                f"name the task columns of {table.path}: data.tasks=[col1,col2] (columns: {', '.join(table.header)})"
            )
        declared = {c: {} for c in table.header if c not in set(not_tasks)}
    elif not isinstance(declared, Mapping):
        declared = {str(c): {} for c in declared}
    specs: dict[str, dict[str, Any]] = {}
    for name, given in declared.items():
        given = {"kind": given} if isinstance(given, str) else dict(given or {})  # {weight: regression}
        column = str(given.get("column") or name)
        if column not in table.header:
            problems.append(Problem(1, f"no column '{column}' for task '{name}' (data.tasks); columns: {', '.join(table.header)}"))
            continue
        values = [v for v in table.column(column) if v]
        if table.rows and not values:
            problems.append(Problem(1, f"task column '{column}' is empty in every row; fill it or leave it out of data.tasks"))
            continue
        kind = given.get("kind") or _infer_kind(values)
        distinct = len(set(values))
        if every_column and kind == "multiclass" and distinct > max(MAX_INFERRED_CLASSES, len(values) // 2):
            problems.append(Problem(1, f"column '{column}' has {distinct} different values in {len(values)} rows: an "
                                       f"identifier, not a task? name the task columns with data.tasks=[...]"))
            continue
        if kind not in KINDS:
            problems.append(Problem(1, f"task '{name}' has kind '{kind}'; use one of {', '.join(KINDS)}"))
            continue
        spec = {"kind": kind, "column": column}
        if kind == "regression":
            spec["classes"] = []
        else:
            spec["classes"] = [str(c) for c in given.get("classes") or sorted_classes(values)]
        if given.get("metric"):
            spec["metric"] = given["metric"]
        specs[str(name)] = spec
    if not specs and not problems:
        problems.append(Problem(1, f"no task columns among {', '.join(table.header)}; add a column per task or name them with data.tasks"))
    return specs


def _infer_kind(values: list[str]) -> str:
    numbers = as_numbers(values)
    distinct = len(set(values))
    if numbers is not None and (not np.all(numbers == np.round(numbers)) or distinct > MAX_INFERRED_CLASSES):
        return "regression"
    return "binary" if distinct == 2 else "multiclass"


def sorted_classes(values: list[str]) -> list[str]:
    """Sorted and stable: by value when every class is a number (2 before 10), else by text."""
    distinct = sorted(set(values))
    numbers = as_numbers(distinct)
    if numbers is not None:
        return [distinct[i] for i in np.argsort(numbers, kind="stable")]
    return distinct


def as_numbers(values: list[str]) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None


def encode_labels(table: Table, specs: Mapping[str, Mapping[str, Any]], problems: list[Problem]) -> dict[str, np.ndarray]:
    """Column -> labels: class indices (-1 where empty) or float32 values (NaN where empty)."""
    labels = {}
    for name, spec in specs.items():
        cells = table.column(spec["column"])
        if spec["kind"] == "regression":
            values = np.full(len(cells), np.nan, np.float32)
            for i, cell in enumerate(cells):
                if cell:
                    try:
                        values[i] = float(cell)
                    except ValueError:
                        problems.append(Problem(table.lines[i], f"task '{name}' is a regression task but '{cell}' is not a number"))
        else:
            index = {c: k for k, c in enumerate(spec["classes"])}
            values = np.full(len(cells), -1, np.int64)
            for i, cell in enumerate(cells):
                if cell:
                    if cell in index:
                        values[i] = index[cell]
                    else:
                        problems.append(Problem(
                            table.lines[i], f"'{cell}' is not a class of task '{name}' (declared: {', '.join(spec['classes'])})"
                        ))
        labels[spec["column"]] = values
    return labels


# ---------------------------------------------------------------------------- splits


@dataclass
class SplitPlan:
    of_row: np.ndarray  # index into SPLITS per row; -1 where the row's split is unusable
    how: str  # for the summary: where the split came from
    given: bool  # from the file's split column (else drawn)
    moved: int = 0  # rows moved to train because their class was absent from it


def assign_splits(
    table: Table,
    split_column: str | None,
    fractions: Mapping[str, float],
    seed: int,
    stratify: np.ndarray | None,
    problems: list[Problem],
) -> SplitPlan:
    """Each row's split: from the split column when the table has one, else drawn by the data
    seed, stratified by `stratify` (a classification task's labels; unlabelled rows are a
    stratum of their own)."""
    n = len(table.rows)
    if split_column and split_column in table.header:
        of_row = np.full(n, -1, np.int64)
        for i, cell in enumerate(table.column(split_column)):
            name = SPLIT_ALIASES.get(cell.lower())
            if name is None:
                shown = f"'{cell}'" if cell else "empty"
                problems.append(Problem(table.lines[i], f"split {shown} is not one of train, val, test (column '{split_column}')"))
            else:
                of_row[i] = SPLITS.index(name)
        return SplitPlan(of_row, f"from column '{split_column}'", given=True)

    shares = _fractions(fractions)
    rng = np.random.default_rng([seed, 0x5B11])
    strata = np.zeros(n, np.int64) if stratify is None else stratify
    of_row = np.empty(n, np.int64)
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        bounds = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
        for k, part in enumerate(np.split(members, bounds)):
            of_row[part] = k
    how = f"drawn by data seed {seed} ({' / '.join(f'{s:g}' for s in shares)})"
    return SplitPlan(of_row, how + (", stratified" if stratify is not None else ""), given=False)


def empty_splits(table: Table, plan: SplitPlan, split_column: str | None, problems: list[Problem]) -> None:
    for k, name in enumerate(SPLITS):
        if table.rows and not np.any(plan.of_row == k):
            if plan.given:
                fix = f"no row has '{name}' in column '{split_column}'"
            else:
                fix = f"data.split_fractions.{name} of {len(table.rows)} rows gives none; raise it, add rows or add a split column"
            problems.append(Problem(1, f"the {name} split would be empty: {fix}"))


def _fractions(fractions: Mapping[str, float]) -> list[float]:
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise UserError(f"data.split_fractions has unknown split {sorted(unknown)[0]!r}; use train, val and test")
    shares = [float(fractions.get(name, 0)) for name in SPLITS]
    if any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise UserError(f"data.split_fractions must be >= 0 and sum to 1, got {dict(zip(SPLITS, shares))}")
    return shares


def classes_absent_from_train(
    table: Table,
    specs: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, np.ndarray],
    plan: SplitPlan,
    problems: list[Problem],
    move: bool,
) -> None:
    """A val/test row whose class (of any task) no training row has: a problem when the split
    was given; moved to train when the split was drawn (the draw must never break a data set)."""
    train = plan.of_row == 0
    for name, spec in specs.items():
        if spec["kind"] == "regression":
            continue
        y = labels[spec["column"]]
        seen = set(np.unique(y[train]).tolist())
        for i in np.flatnonzero((plan.of_row > 0) & (y >= 0)):
            if int(y[i]) not in seen:
                if move:
                    plan.of_row[i] = 0
                    plan.moved += 1
                    seen.add(int(y[i]))
                else:
                    split = SPLITS[plan.of_row[i]]
                    problems.append(Problem(
                        table.lines[i], f"class '{spec['classes'][y[i]]}' of task '{name}' is in the {split} split but in no "
                        f"training row; move a row of it to train or drop this row"
                    ))


def labels_per_split(
    specs: Mapping[str, Mapping[str, Any]], labels: Mapping[str, np.ndarray], plan: SplitPlan, problems: list[Problem]
) -> None:
    """Every task needs labelled rows in every split (R² needs two) to be trained and scored."""
    for name, spec in specs.items():
        y = labels[spec["column"]]
        labelled = ~np.isnan(y) if spec["kind"] == "regression" else y >= 0
        need = 2 if spec["kind"] == "regression" else 1
        for k, split in enumerate(SPLITS):
            count = int(np.sum(labelled & (plan.of_row == k)))
            if np.any(plan.of_row == k) and count < need:
                problems.append(Problem(
                    1, f"task '{name}' has {count} labelled row{'s' if count != 1 else ''} in the {split} split "
                    f"(needs {need}); label more rows of it"
                ))


def split_order(plan: SplitPlan) -> tuple[np.ndarray, dict[str, slice]]:
    """Row indices ordered train, val, test (each in file order), and each split's slice of them:
    a split is then a contiguous block, a view of a cache rather than a copy."""
    order = np.argsort(plan.of_row, kind="stable")
    counts = np.bincount(plan.of_row, minlength=len(SPLITS))
    ends = np.cumsum(counts)
    return order, {name: slice(int(end - count), int(end)) for name, count, end in zip(SPLITS, counts, ends)}


def first_classification(specs: Mapping[str, Mapping[str, Any]], labels: Mapping[str, np.ndarray]) -> np.ndarray | None:
    for spec in specs.values():
        if spec["kind"] != "regression":
            return labels[spec["column"]]
    return None


@dataclass
class Parsed:
    """A CSV read into tasks, labels and a split (what both CSV sources share)."""

    table: Table
    specs: dict[str, dict[str, Any]]
    labels: dict[str, np.ndarray]
    plan: SplitPlan
    problems: list[Problem] = field(default_factory=list)


def parse(cfg: Any, path: str | Path, what: str, not_tasks: Iterable[str], required_tasks: bool = False) -> Parsed:
    """Read a CSV per its data config: tasks, labels, split; problems collected, not raised."""
    problems: list[Problem] = []
    table = read_table(path, what, problems)
    split_column = cfg.get("split_column")
    specs = task_specs(table, plain(cfg.get("tasks")), [*not_tasks, split_column], problems, required_tasks)
    labels = encode_labels(table, specs, problems)
    plan = assign_splits(table, split_column, plain(cfg.split_fractions), int(cfg.seed), first_classification(specs, labels), problems)
    classes_absent_from_train(table, specs, labels, plan, problems, move=not plan.given)
    empty_splits(table, plan, split_column, problems)
    labels_per_split(specs, labels, plan, problems)
    return Parsed(table, specs, labels, plan, problems)


def plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
