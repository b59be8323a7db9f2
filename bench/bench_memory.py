"""Peak memory (RSS) of `mtl run multitask` as the training set grows: the data is held once.

    .venv/bin/python bench/bench_memory.py [--sizes 3000 24000 96000]

For each training-set size, two fresh processes run the command: the first renders the generated
data set and caches it, the second reads the cache (as every later run does). Each reports its
peak RSS. The training loop is cut short (a few batches): it allocates the same whatever the
data size, while the data are loaded whole either way. Prints peak RSS beside the size of the
data (uint8 images of all three splits) and the slope between sizes, ΔRSS / Δdata: 1.0 means
the images are held once, 2.0 twice.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

WRAPPER = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
    "sys.argv = ['mtl', *sys.argv[1:]]\n"
    "from mtl_cli.main import main\n"
    "main()\n"
)
SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
]


def peak_mb(overrides: list[str]) -> float:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, "run", "multitask", *SHORT, *overrides], capture_output=True, text=True
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("peak_kb")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"run failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    return int(lines[0].split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 24000, 96000])
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mtl-bench-memory-")
    val, test, pixels = 500, 1000, 32 * 32 * 3
    try:
        rows = []
        for size in args.sizes:
            overrides = [f"data.splits.train={size}", f"data_dir={root}/data", f"runs_dir={root}/runs"]
            first = peak_mb(overrides)
            later = peak_mb(overrides)
            rows.append((size, (size + val + test) * pixels / 2**20, first, later))
        print(f"{'train size':>10} {'data MB':>8} {'first run MB':>13} {'later run MB':>13}")
        for size, data, first, later in rows:
            print(f"{size:>10} {data:8.1f} {first:13.1f} {later:13.1f}")
        for (_, d0, f0, l0), (_, d1, f1, l1) in zip(rows, rows[1:]):
            print(f"slope ΔRSS/Δdata {d0:.0f} → {d1:.0f} MB: first run {(f1 - f0) / (d1 - d0):.2f}, later run {(l1 - l0) / (d1 - d0):.2f}")
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
