"""How fast are the generated scenarios drawn, and reloaded from the cache?

    python bench/bench_generate.py

Prints, per scenario, the rendering rate for 10,000 images at 32x32 (best of 3 runs,
wall clock and CPU time) and the rate of reloading the same images from the .npz cache.
"""

from __future__ import annotations

import os
import tempfile
import time

from mtl.data.generated import SCENARIOS, generate_splits, render

N_IMAGES = 10_000
IMAGE_SIZE = 32
REPEATS = 3


def best_of(repeats: int, work) -> tuple[float, float]:
    """Fastest (wall seconds, CPU seconds) of `repeats` calls of work()."""
    timings = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        timings.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(timings)


def main() -> None:
    print(f"{N_IMAGES} images of {IMAGE_SIZE}x{IMAGE_SIZE}, {os.cpu_count()} cores, best of {REPEATS}")
    for scenario in SCENARIOS:
        wall, cpu = best_of(REPEATS, lambda: render(scenario, N_IMAGES, seed=0, image_size=IMAGE_SIZE))
        rate = N_IMAGES / wall
        print(f"{scenario:8s} generate: {rate:9,.0f} images/s  ({wall:.2f} s wall, {cpu:.2f} s CPU)")

        with tempfile.TemporaryDirectory() as cache_dir:
            sizes = {"train": N_IMAGES}

            def load():
                return generate_splits(scenario, sizes, seed=0, image_size=IMAGE_SIZE, cache_dir=cache_dir)

            load()  # the first call generates and writes the cache
            wall, _ = best_of(REPEATS, load)
        print(f"{scenario:8s} reload:   {N_IMAGES / wall:9,.0f} images/s  ({wall:.3f} s wall)")


if __name__ == "__main__":
    main()
