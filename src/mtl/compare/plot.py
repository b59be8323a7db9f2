"""Figures for `mtl compare --plot`: grouped bars per task, and data-efficiency curves.

matplotlib is imported here only, and only when a plot is asked for (it is slow to import).
"""

from __future__ import annotations

from pathlib import Path

from mtl.compare.aggregate import Comparison, Row, Section
from mtl.compare.render import column_header, display_scale, shown_descriptors
from mtl.errors import UserError


def row_label(row: Row, section: Section, with_train_size: bool = True) -> str:
    """A short legend label from the descriptors that differ between rows."""
    keys = [k for k in shown_descriptors(section) if k not in ("paradigm", "source")]
    if not with_train_size:
        keys = [k for k in keys if k != "train_size"]
    parts = [f"n={row.train_size}" if k == "train_size" else str(row.descriptor(k)) for k in keys]
    label = " ".join(p for p in parts if p != "None")
    return f"{label} ← {row.source}" if row.source else label


def efficiency_curves(section: Section) -> dict[tuple, list[Row]]:
    """Rows that differ only in training size, grouped by everything else (>= 2 sizes)."""
    groups: dict[tuple, list[Row]] = {}
    for row in section.rows:
        if row.train_size is not None:
            groups.setdefault(row.identity, []).append(row)
    return {
        identity: sorted(rows, key=lambda r: r.train_size)
        for identity, rows in groups.items()
        if len({r.train_size for r in rows}) >= 2
    }


def plot(comparison: Comparison, path: str | Path) -> Path:
    """Write the figure to `path` (format from its suffix, PNG when it has none)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    panels = [("bars", section, None) for section in comparison.sections]
    for section in comparison.sections:
        if efficiency_curves(section):
            panels += [("curve", section, column) for column in section.tasks]
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.5 * rows), squeeze=False)
    for ax, (kind, section, column) in zip(axes.flat, panels):
        if kind == "bars":
            _bars(ax, section)
        else:
            _curve(ax, section, column)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except (OSError, ValueError) as e:
        raise UserError(f"cannot write plot '{path}': {e}; choose a writable FILE.png") from None
    finally:
        plt.close(fig)
    return path


def _colours(section: Section) -> dict[tuple, str]:
    """One colour per kind of run (everything but the training size), the same in bars and curves."""
    identities = dict.fromkeys(row.identity for row in section.rows)
    return {identity: f"C{i % 10}" for i, identity in enumerate(identities)}


def _bars(ax, section: Section) -> None:
    width = 0.8 / max(len(section.rows), 1)
    colours = _colours(section)
    sizes = sorted({row.train_size for row in section.rows if row.train_size is not None})
    for i, row in enumerate(section.rows):
        # the kind's colour, lighter for smaller training sets
        shade = 0.35 + 0.65 * (sizes.index(row.train_size) + 1) / len(sizes) if row.train_size in sizes else 1.0
        xs, means, errors = [], [], []
        for t, column in enumerate(section.tasks):
            cell = row.cells.get(column.name)
            if cell is not None:
                scale = display_scale(column)
                xs.append(t - 0.4 + width * (i + 0.5))
                means.append(cell.mean * scale)
                errors.append((cell.std or 0.0) * scale)
        ax.bar(xs, means, width, yerr=errors, capsize=3, color=colours[row.identity], alpha=shade, label=row_label(row, section))
    ax.set_xticks(range(len(section.tasks)))
    ax.set_xticklabels([column_header(c) for c in section.tasks], fontsize=8)
    ax.set_title(f"{section.data}: test metric per task (mean ± std over seeds)", fontsize=9)
    # Below the axes: with many rows an inside legend hides the bars.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)


def _curve(ax, section: Section, column) -> None:
    scale = display_scale(column)
    colours = _colours(section)
    sizes = set()
    for identity, rows in efficiency_curves(section).items():
        points = [(r.train_size, r.cells[column.name]) for r in rows if column.name in r.cells]
        if not points:
            continue
        sizes.update(size for size, _ in points)
        ax.errorbar(
            [size for size, _ in points],
            [cell.mean * scale for _, cell in points],
            yerr=[(cell.std or 0.0) * scale for _, cell in points],
            marker="o",
            capsize=3,
            color=colours[identity],
            label=row_label(rows[0], section, with_train_size=False),
        )
    ax.set_xscale("log")  # training sizes usually grow geometrically
    ax.set_xticks(sorted(sizes), [str(size) for size in sorted(sizes)])
    ax.minorticks_off()
    ax.set_xlabel("training examples")
    ax.set_ylabel(column_header(column))
    ax.set_title(f"{section.data}: data efficiency, {column.name}", fontsize=9)
    ax.legend(fontsize=7)
