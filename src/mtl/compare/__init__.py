"""Compare run records: group, aggregate over seeds, contrast with single-task, render.

    records, skipped = load_runs(["runs/"])
    comparison = build_comparison(records, skipped, filters=["data=fruits"])
    print(render(comparison, "md", show_ci=True))
    plot(comparison, "compare.png")

Reads run.json only; never imports torch, numpy or scipy (matplotlib only inside plot).
"""

from mtl.compare.aggregate import (
    Cell,
    Comparison,
    Contrast,
    Row,
    Section,
    Skipped,
    TaskColumn,
    build_comparison,
    load_runs,
)
from mtl.compare.plot import plot
from mtl.compare.render import FORMATS, check_format, print_rich, render, rich_renderables, to_dict

__all__ = [
    "FORMATS",
    "Cell",
    "Comparison",
    "Contrast",
    "Row",
    "Section",
    "Skipped",
    "TaskColumn",
    "build_comparison",
    "check_format",
    "load_runs",
    "plot",
    "render",
    "print_rich",
    "rich_renderables",
    "to_dict",
]
