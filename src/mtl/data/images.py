"""The `images_csv` source: a CSV manifest (an image path column, one column per task) over a
folder of images of any common format and size.

Images are decoded once with Pillow, converted to RGB or grey, resized to the model's input,
and cached as one uint8 .npy file under data_dir/images_csv/, rows ordered train, val, test so
each split is a contiguous view. The cache is named by a hash of every image's path, size and
modification time, the order of the rows and the resize settings: editing an image, the split
or the settings makes a new one; editing only labels reuses it. A cache that fits in memory is
read into it (no epoch touches the disk); a larger one is memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mtl.data.build import Loaded
from mtl.data.table import DataProblems, Parsed, Problem, parse, plain, split_order
from mtl.errors import UserError

CACHE_VERSION = 1
MODES = {"rgb": "RGB", "grey": "L", "gray": "L"}
RESIZES = ("stretch", "crop", "pad")


def load_images(cfg: Any, data_dir: Path) -> Loaded:
    if not cfg.get("manifest"):
        raise UserError(
            "data=images_csv needs its manifest: data.manifest=PATH/TO/labels.csv "
            "(a CSV with an image path column and one column per task)"
        )
    manifest = Path(cfg.manifest).expanduser().resolve()
    color, resize, size = str(cfg.color).lower(), str(cfg.resize), int(cfg.image_size)
    if color not in MODES:
        raise UserError(f"data.color must be rgb or grey, got '{cfg.color}'")
    if resize not in RESIZES:
        raise UserError(f"data.resize must be one of {', '.join(RESIZES)}, got '{resize}'")
    if size < 4:
        raise UserError(f"data.image_size must be at least 4 pixels, got {size}")
    name = cfg.get("name") or manifest.stem
    path_column = cfg.path_column
    parsed = parse(cfg, manifest, "manifest", not_tasks=[path_column])
    table, problems = parsed.table, parsed.problems
    if path_column not in table.header:
        problems.append(Problem(1, f"no image path column '{path_column}'; set data.path_column to one of: {', '.join(table.header)}"))
        raise DataProblems(name, manifest, problems)

    root = Path(cfg.root).expanduser().resolve() if cfg.get("root") else manifest.parent
    files: list[tuple[str, int, int] | None] = []
    for cell, line in zip(table.column(path_column), table.lines):
        path = root / Path(cell).expanduser() if cell else None
        try:
            stat = path.stat() if path else None
        except OSError:
            stat = None
        if path is None:
            problems.append(Problem(line, f"empty image path (column '{path_column}')"))
        elif stat is None or not path.is_file():
            problems.append(Problem(line, f"image '{cell}' not found (looked for {path})"))
        files.append((str(path), stat.st_mtime_ns, stat.st_size) if stat else None)

    settings = (size, MODES[color], resize)
    if problems:
        # Still decode what exists, so that unreadable images are reported in the same list.
        _decode_all([f[0] if f else None for f in files], table.lines, settings, problems, out=None)
        raise DataProblems(name, manifest, problems)

    order, slices = split_order(parsed.plan)
    images, sizes = _cached(
        [files[i] for i in order], [table.lines[i] for i in order], settings, Path(data_dir), name, manifest, problems
    )
    if problems:
        raise DataProblems(name, manifest, problems)
    arrays = {
        split: (images[part], {column: values[order][part] for column, values in parsed.labels.items()})
        for split, part in slices.items()
    }
    spec = plain(cfg)
    spec.update(name=name, manifest=str(manifest), root=str(root), color=color, tasks=parsed.specs)
    return Loaded(arrays, spec, _facts(parsed, manifest, sizes, settings))


def _cached(
    files: list[tuple[str, int, int]],
    lines: list[int],
    settings: tuple[int, str, str],
    data_dir: Path,
    name: str,
    manifest: Path,
    problems: list[Problem],
) -> tuple[np.ndarray, dict[str, int]]:
    """The decoded images in `files` order, from the cache or decoded into it; and the count of
    each original image size."""
    key = json.dumps({"version": CACHE_VERSION, "files": files, "settings": settings})
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    folder = data_dir / "images_csv"
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}.npy"
    sizes_path = path.with_suffix(".json")
    if path.is_file() and sizes_path.is_file():
        return _open(path), json.loads(sizes_path.read_text())
    size, mode, _ = settings
    channels = 3 if mode == "RGB" else 1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=path.stem, suffix=".tmp")
        os.close(handle)
    except OSError as e:
        raise UserError(f"cannot write the image cache in {folder} ({e.strerror}); set data_dir to a writable folder") from None
    try:
        # Written straight into a file-backed array: a data set larger than memory never has
        # to fit in it.
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(files), size, size, channels))
        sizes = _decode_all([f[0] for f in files], lines, settings, problems, out)
        out.flush()
        del out
        if problems:
            os.unlink(temporary)
            return np.empty((0, size, size, channels), np.uint8), sizes
        _write_text(sizes_path, json.dumps(sizes))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return _open(path), sizes


def _open(path: Path) -> np.ndarray:
    """Read into memory when the cache fits comfortably, else memory-map it (copy-on-write, so
    torch may wrap it without a read-only warning; nothing is ever written back)."""
    if path.stat().st_size < _available_memory() // 2:
        return np.load(path)
    return np.load(path, mmap_mode="c")


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf figure on this platform: assume plenty
        return 1 << 62


def _decode_all(
    paths: list[str | None],
    lines: list[int],
    settings: tuple[int, str, str],
    problems: list[Problem],
    out: np.ndarray | None,
) -> dict[str, int]:
    """Decode every image (into `out` when given; else only to find unreadable ones), in
    threads: Pillow releases the GIL while it decodes and resizes."""

    def one(i: int) -> str | None:
        if paths[i] is None:
            return None
        try:
            image, original = decode(paths[i], *settings)
        except Exception as e:  # Pillow raises many types for a bad file: each is the user's file
            problems.append(Problem(lines[i], f"cannot read image '{paths[i]}' ({type(e).__name__}: {_first_line(e)})"))
            return None
        if out is not None:
            out[i] = image
        return original

    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        seen = Counter(s for s in pool.map(one, range(len(paths))) if s)
    return dict(seen.most_common())


def decode(path: str, size: int, mode: str, resize: str) -> tuple[np.ndarray, str]:
    """One image as uint8 (size, size, channels), and its original size as 'W×H'."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        original = f"{image.width}×{image.height}"
        image.draft(mode, (size, size))  # JPEG: let the decoder downscale (much faster for photos)
        image = ImageOps.exif_transpose(image).convert(mode)
        target = (size, size)
        if resize == "crop":
            image = ImageOps.fit(image, target, Image.Resampling.BILINEAR)
        elif resize == "pad":
            image = ImageOps.pad(image, target, Image.Resampling.BILINEAR)
        else:
            image = image.resize(target, Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(size, size, -1), original


def _facts(parsed: Parsed, manifest: Path, sizes: dict[str, int], settings: tuple[int, str, str]) -> dict[str, str]:
    size, mode, resize = settings
    shown = ", ".join(f"{s} ({n})" for s, n in list(sizes.items())[:5])
    if len(sizes) > 5:
        shown += f", and {len(sizes) - 5} more sizes"
    split = parsed.plan.how
    if parsed.plan.moved:
        split += f"; {parsed.plan.moved} val/test rows moved to train (their class had no training row)"
    return {
        "file": str(manifest),
        "rows": str(len(parsed.table.rows)),
        "split": split,
        "images": f"{sum(sizes.values())} read; sizes seen: {shown}",
        "resized to": f"{size}×{size} {'rgb' if mode == 'RGB' else 'grey'} ({resize})",
    }


def _write_text(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    with os.fdopen(handle, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "unreadable"
