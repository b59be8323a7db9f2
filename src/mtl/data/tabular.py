"""The `tabular_csv` source: one CSV row per example, some columns tasks (classification or
regression), the others input features.

Numeric features pass through (an empty cell takes the training mean); categorical ones are
one-hot encoded over the categories of the training split (an empty or unseen one is all
zeros). The fitted encoding goes into the completed data config (`data.features`), hence into
the run's config.yaml and checkpoint: evaluating or fine-tuning from that run encodes any
table the same way. Standardisation is the network's own input normalisation, with statistics
of the training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mtl.data.build import Loaded
from mtl.data.table import DataProblems, Parsed, Problem, Table, as_numbers, plain, sorted_classes, parse, split_order
from mtl.errors import UserError

FEATURE_TYPES = ("numeric", "categorical")
# More categories than this in one column is more often an identifier than a feature.
MANY_CATEGORIES = 50


def load_table(cfg: Any, data_dir: Path) -> Loaded:
    if not cfg.get("file"):
        raise UserError(
            "data=tabular_csv needs its table: data.file=PATH/TO/table.csv data.tasks=[col1,col2] "
            "(the other columns are the input features)"
        )
    path = Path(cfg.file).expanduser().resolve()
    name = cfg.get("name") or path.stem
    parsed = parse(cfg, path, "table", not_tasks=[], required_tasks=True)
    table, problems = parsed.table, parsed.problems
    task_columns = {spec["column"] for spec in parsed.specs.values()}
    not_features = task_columns | {cfg.get("split_column")}
    declared = plain(cfg.get("features"))
    if declared is None:
        declared = {c: {} for c in table.header if c not in not_features}
    elif not isinstance(declared, Mapping):
        declared = {str(c): {} for c in declared}
    train = parsed.plan.of_row == 0
    encoding, notes = {}, []
    for column, given in declared.items():
        if isinstance(given, str):  # {age: numeric}
            given = {"type": given}
        elif isinstance(given, list):  # {colour: [red, green]}
            given = {"type": "categorical", "categories": given}
        given = dict(given or {})
        if column not in table.header:
            problems.append(Problem(1, f"no feature column '{column}' (data.features); columns: {', '.join(table.header)}"))
        elif column in task_columns:
            problems.append(Problem(1, f"column '{column}' is a task; it cannot also be a feature (data.features)"))
        else:
            fitted = _fit(table, column, given, train, problems)
            if fitted is not None:
                encoding[column] = fitted
                if len(fitted.get("categories", ())) > MANY_CATEGORIES:
                    notes.append(f"'{column}' has {len(fitted['categories'])} categories: if it is an identifier, leave it out with data.features=[...]")
    if not declared:
        problems.append(Problem(1, "no feature columns: every column is a task or the split"))
    x = _encode(table, encoding, problems)
    if problems:
        raise DataProblems(name, path, problems)
    order, slices = split_order(parsed.plan)
    arrays = {
        split: (x[order][part], {column: values[order][part] for column, values in parsed.labels.items()})
        for split, part in slices.items()
    }
    spec = plain(cfg)
    spec.update(name=name, file=str(path), tasks=parsed.specs, features=encoding)
    return Loaded(arrays, spec, _facts(parsed, path, encoding, x.shape[1], notes))


def _fit(table: Table, column: str, given: dict[str, Any], train: np.ndarray, problems: list[Problem]) -> dict[str, Any] | None:
    """A column's encoding, as declared or fitted on the training rows."""
    cells = table.column(column)
    values = [c for c in cells if c]
    kind = given.get("type") or ("numeric" if as_numbers(values) is not None else "categorical")
    if kind not in FEATURE_TYPES:
        problems.append(Problem(1, f"feature '{column}' has type '{kind}'; use numeric or categorical"))
        return None
    if not values:
        problems.append(Problem(1, f"feature column '{column}' is empty in every row; fill it or leave it out of data.features"))
        return None
    training = [c for c, t in zip(cells, train) if c and t]
    if kind == "categorical":
        return {"type": kind, "categories": [str(c) for c in given.get("categories") or sorted_classes(training or values)]}
    if given.get("fill") is not None:
        return {"type": kind, "fill": float(given["fill"])}
    numbers = as_numbers(training)
    # A non-number makes the mean unknowable; _encode reports each such cell with its line.
    return {"type": kind, "fill": float(numbers.mean()) if numbers is not None and len(numbers) else 0.0}


def _encode(table: Table, encoding: dict[str, dict[str, Any]], problems: list[Problem]) -> np.ndarray:
    width = sum(len(e["categories"]) if e["type"] == "categorical" else 1 for e in encoding.values())
    x = np.zeros((len(table.rows), width), np.float32)
    at = 0
    for column, e in encoding.items():
        cells = table.column(column)
        if e["type"] == "categorical":
            index = {c: k for k, c in enumerate(e["categories"])}
            for i, cell in enumerate(cells):
                if cell in index:
                    x[i, at + index[cell]] = 1.0
            at += len(index)
            continue
        for i, cell in enumerate(cells):
            if not cell:
                x[i, at] = e["fill"]
                continue
            try:
                x[i, at] = float(cell)
            except ValueError:
                problems.append(Problem(table.lines[i], f"feature '{column}' is numeric but '{cell}' is not a number"))
        at += 1
    return x


def _facts(parsed: Parsed, path: Path, encoding: dict[str, dict[str, Any]], width: int, notes: list[str]) -> dict[str, str]:
    described = [
        f"{c} ({len(e['categories'])} categories)" if e["type"] == "categorical" else f"{c} (numeric)"
        for c, e in encoding.items()
    ]
    split = parsed.plan.how
    if parsed.plan.moved:
        split += f"; {parsed.plan.moved} val/test rows moved to train (their class had no training row)"
    facts = {
        "file": str(path),
        "rows": str(len(parsed.table.rows)),
        "split": split,
        "features": f"{width} inputs from {len(encoding)} columns: {', '.join(described)}",
    }
    if notes:
        facts["note"] = "; ".join(notes)
    return facts
