"""Start-up cost of the `mtl` command: `mtl --help`, `mtl run --help`, a config error and
`mtl compare` over 100 runs, each a fresh process of the installed console script.

    .venv/bin/python bench/bench_cli.py [--repeats 9] [--other-typer DIR]

Rounds interleave the commands (and a bare `python -c pass`, the floor), so a burst of load on
a shared machine hits them alike; prints the median wall time of each, its ratio to bare
start-up, and which heavy modules each command imported (torch must be none of them).
--other-typer DIR also times every mtl command with the typer installed in DIR shadowing ours,
in the same rounds (e.g. pip install --target DIR typer==0.29.2, which validates parameters
with pydantic).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_compare import write_synthetic_runs  # noqa: E402  (the same 100 records)

MTL = str(Path(sys.executable).with_name("mtl"))
HEAVY = ("torch", "pytorch_lightning", "hydra", "pydantic", "matplotlib", "scipy")
# The console script's own entry point, then the list of heavy modules it loaded, on stderr.
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('loaded:', ' '.join(m for m in {heavy} if m in sys.modules) or 'none', file=sys.stderr))\n"
    "sys.argv = ['mtl', *sys.argv[1:]]\n"
    "from mtl_cli.main import main\n"
    "main()\n"
)


def timed(argv: list[str], env: dict[str, str] | None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def loaded(args: list[str], env: dict[str, str] | None) -> str:
    probe = PROBE.format(heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env)
    return next((line[len("loaded: ") :] for line in result.stderr.splitlines() if line.startswith("loaded: ")), "?")


def typer_version(env: dict[str, str] | None) -> str:
    code = "import typer; print(typer.__version__)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--other-typer", metavar="DIR", help="also time the mtl commands with the typer in DIR")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mtl-bench-cli-"))
    try:
        write_synthetic_runs(root, 100)
        mtl_commands = {
            "mtl --help": [MTL, "--help"],
            "mtl run --help": [MTL, "run", "--help"],
            "mtl run multitask data=nope": [MTL, "run", "multitask", "data=nope"],
            "mtl compare (100 runs)": [MTL, "compare", str(root)],
            "mtl compare --format json": [MTL, "compare", str(root), "--format", "json"],
        }
        envs: dict[str, dict[str, str] | None] = {f"typer {typer_version(None)}": None}
        if args.other_typer:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(args.other_typer))
            envs[f"typer {typer_version(env)}"] = env
        runs = [("python -c pass", "-", [sys.executable, "-c", "pass"], None)]
        runs += [(name, variant, argv, env) for name, argv in mtl_commands.items() for variant, env in envs.items()]
        for _, _, argv, env in runs:
            timed(argv, env)  # warm the bytecode and file caches
        times: dict[tuple[str, str], list[float]] = {(name, variant): [] for name, variant, _, _ in runs}
        for _ in range(args.repeats):
            for name, variant, argv, env in runs:
                times[name, variant].append(timed(argv, env))
        bare = statistics.median(times["python -c pass", "-"])
        print(f"{'command':<28} {'with':<13} {'median ms':>9} {'x start-up':>10}  heavy modules imported")
        for name, variant, argv, env in runs:
            median = statistics.median(times[name, variant])
            heavy = "-" if argv[0] == sys.executable else loaded(argv[1:], env)
            print(f"{name:<28} {variant:<13} {median * 1000:9.1f} {median / bare:10.1f}  {heavy}")
        print(f"(median of {args.repeats} interleaved rounds; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
