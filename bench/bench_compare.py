"""Time `mtl compare` end to end on 100 synthetic run records.

    .venv/bin/python bench/bench_compare.py [--repeats 7]

Writes the records to a temp dir, then times a fresh interpreter running the compare
command (import, read, aggregate, render the rich table) against a bare `python -c pass`
and a do-nothing Typer command measured in the same script (the floor any command pays),
and prints the median times and their ratio to bare start-up.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mtl.records import PARADIGM, write_record

TASKS = [
    {"name": "fruit", "kind": "multiclass", "classes": ["apple", "orange", "banana"],
     "metric": "accuracy", "higher_is_better": True, "column": "fruit"},
    {"name": "colour", "kind": "multiclass", "classes": ["red", "orange", "yellow"],
     "metric": "accuracy", "higher_is_better": True, "column": "colour"},
]  # fmt: skip
APP = (
    "import sys, typer\n"
    "from mtl_cli.compare_cmd import compare\n"
    "app = typer.Typer(); app.command('compare')(compare); app.command('noop')(lambda: 0)\n"
)
COMMAND = APP + "app(['compare', sys.argv[1], *sys.argv[2:]])\n"
# The same app running a command that does nothing: what any Typer command costs here.
NOOP = APP + "app(['noop'])\n"


def synthetic_record(data, kind, tasks, seed, train_size, strategy, rng) -> dict:
    """A record shaped like a real one, history and config included (they dominate its size)."""
    test = {t["name"]: {"accuracy": rng.uniform(0.6, 0.95)} for t in tasks}
    history = [
        {"epoch": e, "train/loss": rng.random()}
        | {f"val/{t['name']}/accuracy": rng.random() for t in tasks}
        for e in range(30)
    ]
    which = tasks[0]["name"] if kind == "single" else "all"
    return {
        "schema": 1,
        "run_id": f"{data}-{kind}-{strategy or 'x'}-{which}-n{train_size}-s{seed}",
        "kind": kind,
        "paradigm": PARADIGM[kind],
        "status": "complete",
        "data": {"name": data, "train_size": train_size, "train_fraction": 1.0},
        "tasks": tasks,
        "method": "ew",
        "arch": "hps",
        "backbone": "cnn",
        "finetune": {"strategy": strategy} if strategy else None,
        "source": {"label": "fruits/multitask", "run_id": "src"} if strategy else None,
        "seed": seed,
        "test": test,
        "best_val": test,
        "history": history,
        "config": {"trainer": {"max_epochs": 30, "lr": 1e-3}, "data": {"name": data}},
        "error": None,
    }


def write_synthetic_runs(root: Path, count: int = 100) -> None:
    rng = random.Random(0)
    written = 0
    while written < count:
        for data in ("fruits", "objects"):
            for train_size in (50, 200):
                seed = written // 20
                plan = [("single", [t], None) for t in TASKS] + [
                    ("multitask", TASKS, None),
                    ("finetune", TASKS, "full"),
                    ("finetune", TASKS, "linear_probe"),
                ]
                for kind, tasks, strategy in plan:
                    if written < count:
                        record = synthetic_record(
                            data, kind, tasks, seed, train_size, strategy, rng
                        )
                        write_record(root / record["run_id"], record)
                        written += 1


def median_seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mtl-bench-compare-"))
    try:
        write_synthetic_runs(root, 100)
        runs = len(list(root.glob("*/run.json")))
        compare = [sys.executable, "-c", COMMAND, str(root)]
        subprocess.run(compare, check=True, capture_output=True)  # warm the bytecode cache
        bare = median_seconds([sys.executable, "-c", "pass"], args.repeats)
        noop = median_seconds([sys.executable, "-c", NOOP], args.repeats)
        table = median_seconds(compare, args.repeats)
        as_json = median_seconds(compare + ["--format", "json"], args.repeats)
        print(f"python -c pass              {bare * 1000:7.1f} ms")
        print(f"typer no-op command         {noop * 1000:7.1f} ms   {noop / bare:5.1f}x start-up")
        for name, seconds in (("table", table), ("json", as_json)):
            label = f"compare {runs} runs ({name})"
            print(f"{label:<27} {seconds * 1000:7.1f} ms   {seconds / bare:5.1f}x start-up")
        print(f"(median of {args.repeats}; Python {sys.version.split()[0]})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
