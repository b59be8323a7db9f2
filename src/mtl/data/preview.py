"""A labelled grid of example images, so a person can see what the network sees."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

IMAGE_INCHES = 1.2  # each image's side in the grid
TITLE_LINE_INCHES = 0.1  # one line of its 6-point title
GAP_INCHES = 0.08


def preview_grid(
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    classes: Mapping[str, Sequence[str]],
    path: str | Path,
    n: int = 36,
) -> Path:
    """Write the first n images as a PNG grid, each titled with its class for every task
    ("task: class", one line per task). Returns the path written."""
    # Imported here: matplotlib is slow to import and only previews need it. Building the
    # figure without pyplot draws on the Agg canvas and leaves global backend state alone.
    from matplotlib.figure import Figure

    count = min(n, len(images))
    if count == 0:
        raise ValueError("preview_grid needs at least one image")
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    # Fixed margins sized for the titles: much faster than tight or constrained layout.
    title_inches = TITLE_LINE_INCHES * len(labels) + GAP_INCHES
    width = columns * (IMAGE_INCHES + GAP_INCHES)
    height = rows * (IMAGE_INCHES + title_inches) + GAP_INCHES
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(
        left=GAP_INCHES / 2 / width,
        right=1 - GAP_INCHES / 2 / width,
        bottom=GAP_INCHES / height,
        top=1 - title_inches / height,
        wspace=GAP_INCHES / IMAGE_INCHES,
        hspace=title_inches / IMAGE_INCHES,
    )
    for index in range(count):
        axes = figure.add_subplot(rows, columns, index + 1)
        image = images[index]
        grey = image.ndim == 3 and image.shape[-1] == 1
        axes.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
        axes.set_title(
            "\n".join(f"{task}: {_label(values[index], classes[task])}" for task, values in labels.items()),
            fontsize=6,
            linespacing=1.0,
            pad=2,
        )
        axes.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _label(value: float, classes: Sequence[str]) -> str:
    """A class name, a regression value, or '—' where the example has no label for the task."""
    if not classes:
        return "—" if np.isnan(value) else f"{value:.3g}"
    return classes[int(value)] if value >= 0 else "—"
