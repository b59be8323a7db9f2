"""Tasks are data, not code: a name, a label column, a kind, a class list and a metric."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mtl.errors import UserError

KINDS = ("multiclass", "binary", "regression")
# metric -> higher is better
METRIC_DIRECTION = {"accuracy": True, "mae": False, "rmse": False, "r2": True}


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    classes: tuple[str, ...] = ()
    metric: str = "accuracy"
    column: str = ""  # the label column in the source table; defaults to the name

    @property
    def num_outputs(self) -> int:
        if self.kind == "multiclass":
            return len(self.classes)
        return 1  # binary: one logit; regression: one value

    @property
    def higher_is_better(self) -> bool:
        return METRIC_DIRECTION[self.metric]

    @property
    def chance(self) -> float | None:
        """Accuracy of always predicting one class uniformly at random (for tests and tables)."""
        if self.kind == "regression":
            return None
        return 1.0 / max(len(self.classes), 2)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["higher_is_better"] = self.higher_is_better
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(
            name=d["name"],
            kind=d["kind"],
            classes=tuple(d.get("classes") or ()),
            metric=d.get("metric", "accuracy"),
            column=d.get("column", ""),
        )


def tasks_from_config(spec: dict[str, Any], dataset: str) -> list[Task]:
    """Build tasks from a data config's `tasks:` mapping, checking what a user may get wrong."""
    tasks = []
    for name, t in spec.items():
        t = dict(t or {})
        kind = t.get("kind", "multiclass")
        if kind not in KINDS:
            raise UserError(
                f"data '{dataset}': task '{name}' has kind '{kind}'; use one of {', '.join(KINDS)}"
            )
        classes = tuple(str(c) for c in (t.get("classes") or ()))
        if kind == "binary" and classes and len(classes) != 2:
            raise UserError(
                f"data '{dataset}': binary task '{name}' needs exactly 2 classes, got {len(classes)}"
            )
        if kind == "binary" and not classes:
            classes = ("no", "yes")
        metric = t.get("metric", "mae" if kind == "regression" else "accuracy")
        if metric not in METRIC_DIRECTION:
            raise UserError(
                f"data '{dataset}': task '{name}' has metric '{metric}'; "
                f"use one of {', '.join(METRIC_DIRECTION)}"
            )
        tasks.append(Task(name, kind, classes, metric, str(t.get("column") or name)))
    if not tasks:
        raise UserError(f"data '{dataset}' declares no tasks; add a `tasks:` mapping to its config")
    return tasks
