"""Where a study's time went, from its own records (run it after `mtl study NAME`).

    .venv/bin/python bench/bench_study.py [runs/studies/fruits-to-objects]

Total is the study's wall time (study.json `last_run_s`, the last `mtl study` call that ran
jobs); fit and test are summed from its runs' `run.json` timings; the rest is everything outside
Lightning's fit and test: composing configs, building data (generation or cache reads), building
networks, Trainer start-up and writing records.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mtl.records import read_record


def main() -> None:
    home = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/studies/fruits-to-objects")
    if not (home / "study.json").is_file():
        sys.exit(f"no study at {home}: run it first (make demo runs mtl study fruits-to-objects)")
    index = json.loads((home / "study.json").read_text())
    if index.get("last_run_s") is None:
        sys.exit(f"{home} has no timed study call yet: run the study (make demo)")
    runs = [read_record(home / d) for job in index["jobs"].values() for d in job["run_dirs"]]
    total = index["last_run_s"]
    fit = sum(r["timing"].get("fit_s", 0) for r in runs)
    test = sum(r["timing"].get("test_s", 0) for r in runs)
    rest = total - fit - test
    print(f"study {index['name']}: {len(index['jobs'])} jobs, {len(runs)} runs, total {total:.0f} s")
    for name, seconds in (("fit", fit), ("test", test), ("rest (configs, data, start-up)", rest)):
        print(f"  {name:32s} {seconds:7.1f} s  {seconds / total:6.1%}")
    by_kind: dict[str, float] = {}
    for r in runs:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["timing"].get("wall_s", 0)
    for kind, seconds in sorted(by_kind.items()):
        print(f"  wall of {kind} runs {'':14s} {seconds:7.1f} s  {seconds / total:6.1%}")


if __name__ == "__main__":
    main()
