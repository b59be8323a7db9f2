"""A multitask image data set from real handwriting, in the images_csv format.

scikit-learn ships a copy of the test set of the UCI "Optical Recognition of Handwritten
Digits" data (1797 grey 8×8 images, 0-16 ink levels, from 43 writers; sklearn.datasets.
load_digits). This writes each image as a PNG and a manifest with two tasks: `digit` (0-9)
and `parity` (even / odd), an auxiliary task derived from the same label.

    python -m mtl.examples.digits data/digits      # then: mtl run multitask data=digits

`mtl run ... data=digits` writes it on first use as well.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

MANIFEST = "digits.csv"


def write_digits(folder: str | Path, manifest: str = MANIFEST) -> Path:
    """Write images/NNNN.png and the manifest into `folder`; returns the manifest's path."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = Path(folder)
    digits = load_digits()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, digit) in enumerate(zip(digits.images, digits.target)):
        name = f"images/{i:04d}.png"
        # 0-16 ink levels to 0-255 grey: the more ink, the brighter
        Image.fromarray(np.round(image * (255 / 16)).astype(np.uint8)).save(folder / name)
        rows.append((name, int(digit), "even" if digit % 2 == 0 else "odd"))
    # The manifest last and atomically: its presence means the images are all there.
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(handle, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "digit", "parity"])
        writer.writerows(rows)
    path = folder / manifest
    os.replace(temporary, path)
    return path


def ensure_digits(manifest: Path) -> None:
    """Write the example where the data config expects it, unless it is already there."""
    if not manifest.is_file():
        write_digits(manifest.parent, manifest.name)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m mtl.examples.digits FOLDER   (e.g. data/digits)")
    path = write_digits(args[0])
    print(f"wrote {path} (1797 images); try: mtl data check data=digits data.manifest={path}")


if __name__ == "__main__":
    main()
