"""One multitask run over T tasks against the T single-task runs it replaces: wall-time ratio.

    .venv/bin/python bench/bench_kinds.py [--repeats 2] [--epochs 2] [--threads N] [--data NAME]... [OVERRIDES...]

For each data set (fruits: T=2, objects: T=3), `mtl run multitask` and `mtl run single` (which
trains one model per task, one after another) run as the user runs them, each a fresh process,
alternating, `repeats` times. Prints the median wall time of each command and of the training
itself (the runs' recorded wall_s), and multitask/single beside 1/T: one shared backbone
instead of T is the saving; the heads and the per-process start-up are what keeps it above 1/T.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MTL = str(Path(sys.executable).with_name("mtl"))
SCENARIOS = {"fruits": 2, "objects": 3}


def run(kind: str, overrides: list[str], runs_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """(command wall time, summed wall_s of the runs it recorded)."""
    before = set(runs_dir.rglob("run.json"))
    start = time.perf_counter()
    subprocess.run([MTL, "run", kind, *overrides, f"runs_dir={runs_dir}"], check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    records = [json.loads(p.read_text()) for p in set(runs_dir.rglob("run.json")) - before]
    return wall, sum(r["timing"]["wall_s"] for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of each run (OMP_NUM_THREADS)")
    parser.add_argument("--data", action="append", choices=list(SCENARIOS), help="repeatable (default: all)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    root = Path(tempfile.mkdtemp(prefix="mtl-bench-kinds-"))
    try:
        threads = f"OMP_NUM_THREADS={args.threads}" if args.threads else "torch's default threads"
        print(f"overrides: {' '.join(args.overrides) or '(defaults)'}; {args.epochs} epochs, {args.repeats} repeats, {threads}")
        print(f"{'':11} {'command wall s':^26}   {'training s (wall_s)':^26}")
        print(f"{'data':8} {'T':>2} {'multitask':>9} {'single':>8} {'ratio':>6}   {'multitask':>9} {'single':>8} {'ratio':>6}   {'1/T':>5}")
        for data in args.data or list(SCENARIOS):
            tasks = SCENARIOS[data]
            overrides = [f"data={data}", f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
                         f"data_dir={root / 'data'}", *args.overrides]  # fmt: skip
            run("multitask", [*overrides, "trainer.max_epochs=1", "trainer.limit_train_batches=1"], root / "warm", env)
            times: dict[str, list[tuple[float, float]]] = {"multitask": [], "single": []}
            for _ in range(args.repeats):
                for kind in times:
                    times[kind].append(run(kind, overrides, root / "runs", env))
            wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
            trained = {k: statistics.median(t for _, t in v) for k, v in times.items()}
            print(
                f"{data:8} {tasks:>2} {wall['multitask']:9.1f} {wall['single']:8.1f} {wall['multitask'] / wall['single']:6.2f}   "
                f"{trained['multitask']:9.1f} {trained['single']:8.1f} {trained['multitask'] / trained['single']:6.2f}   {1 / tasks:5.2f}"
            )
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
