"""What the images_csv cache buys: building a data set from its manifest the first time
(decode every image with Pillow, resize, write the uint8 cache) against every later time
(stat the files, read the cache), and one training epoch's batches from the in-memory cache
against the memory-mapped one.

    .venv/bin/python bench/bench_images_cache.py [--images 2000] [--size 96] [--image-size 32]

Writes `--images` JPEGs of `--size`² pixels (smooth random colour fields, so they compress
like photos rather than noise) to a temp dir with a manifest, and prints median times and
ratios measured in this process.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC).save(folder / f"{i}.jpg", quality=90)
        rows.append([f"{i}.jpg", ["a", "b", "c"][i % 3]])
    manifest = folder / "labels.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], *rows])
    return manifest


def timed(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import mtl.data.images as images
    from mtl.config import compose
    from mtl.data.build import build_data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = write_images(tmp, args.images, args.size)
        cfg = compose("multitask", ["data=images_csv", f"data.manifest={manifest}", f"data.image_size={args.image_size}"])

        def first() -> None:
            for cache in (tmp / "cache").glob("images_csv/*"):
                cache.unlink()
            build_data(cfg.data, tmp / "cache")

        cold = timed(first, args.repeats)
        warm = timed(lambda: build_data(cfg.data, tmp / "cache"), args.repeats)

        def epoch(data) -> None:
            for x, _ in data.loader("train", 64, seed=0):
                x.float().sum()

        in_memory = build_data(cfg.data, tmp / "cache")
        memory_epoch = timed(lambda: epoch(in_memory), args.repeats)
        real_available = images._available_memory
        images._available_memory = lambda: 0  # as if the cache were larger than memory
        mapped = build_data(cfg.data, tmp / "cache")
        images._available_memory = real_available
        mapped_epoch = timed(lambda: epoch(mapped), args.repeats)

    print(f"{args.images} JPEGs {args.size}×{args.size} -> {args.image_size}×{args.image_size} rgb, median of {args.repeats}")
    print(f"  first build (decode + write cache): {cold:.3f} s")
    print(f"  later build (stat + read cache):    {warm:.3f} s   ratio first/later: {cold / warm:.1f}x")
    print(f"  train epoch, cache in memory:       {memory_epoch:.3f} s")
    print(f"  train epoch, cache memory-mapped:   {mapped_epoch:.3f} s   ratio mapped/memory: {mapped_epoch / memory_epoch:.2f}x")


if __name__ == "__main__":
    main()
