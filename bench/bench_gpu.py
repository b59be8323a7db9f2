"""Training samples per second on a GPU: the default and a larger backbone, fp32 and bf16-mixed.

    .venv/bin/python bench/bench_gpu.py [--epochs 3] [OVERRIDES...]   # on a machine with a CUDA GPU
    .venv/bin/python bench/bench_gpu.py --smoke                        # anywhere, on the CPU, in a minute

Each configuration is a real `mtl run multitask` fit (trainer=gpu, trainer.precision=...). Each
training epoch is timed from its start to its last batch's end, the device synchronised at both ends;
samples/s is the median over epochs after the first (kernel selection, allocator warm-up).
--smoke runs every configuration on the CPU with tiny data for one epoch: it checks that the
script works, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from typing import Any

BACKBONES = {
    "default: cnn width 32, 3 blocks, 32 px": [],
    "larger: cnn width 64, 4 blocks, 64 px": ["model.backbone.width=64", "model.backbone.blocks=4", "data.image_size=64"],
}
PRECISIONS = ("32-true", "bf16-mixed")
SMOKE = [
    "trainer=cpu",
    "data.splits.train=128",
    "data.splits.val=32",
    "data.splits.test=32",
    "loader.batch_size=32",
    "trainer.limit_train_batches=2",
    "trainer.enable_progress_bar=false",
]


def epoch_seconds(cfg: Any) -> tuple[list[float], int]:
    """(training time of each epoch of one mtl fit, validation excluded; training examples)."""
    import torch

    from mtl.train import prepare, train

    prepared = prepare(cfg, log=lambda *a: None)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    started: list[float] = []
    seconds: list[float] = []

    def epoch_start(*args: Any) -> None:
        sync()
        started.append(time.perf_counter())

    def epoch_end(*args: Any) -> None:
        sync()
        seconds.append(time.perf_counter() - started[-1])

    def batch_end(outputs: Any, batch: Any, index: int) -> None:
        # on_train_epoch_end would run after the epoch's validation: stop at its last batch instead
        if index == prepared.module.trainer.num_training_batches - 1:
            epoch_end()

    prepared.module.on_train_epoch_start = epoch_start
    prepared.module.on_train_batch_end = batch_end
    train(prepared, log=lambda *a: None)
    batches = prepared.module.trainer.num_training_batches
    return seconds, min(len(prepared.data.splits["train"]), batches * cfg.loader.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny data, one epoch: check the script runs")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    import torch

    from mtl.config import compose

    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing measured (--smoke checks the script on the CPU)")
        return
    epochs = 1 if args.smoke else args.epochs
    base = SMOKE if args.smoke else ["trainer=gpu", "trainer.enable_progress_bar=false"]
    root = tempfile.mkdtemp(prefix="mtl-bench-gpu-")
    device = "CPU (smoke check)" if args.smoke else torch.cuda.get_device_name()
    print(f"device: {device}; torch {torch.__version__}; {epochs} epochs; overrides: {' '.join(args.overrides) or '(none)'}")
    print(f"{'backbone':<40} {'precision':<11} {'epoch s':>8} {'samples/s':>10}")
    try:
        for name, backbone in BACKBONES.items():
            for precision in PRECISIONS:
                overrides = [*base, *backbone, f"trainer.precision={precision}", f"trainer.max_epochs={epochs}",
                             f"runs_dir={root}/runs", f"data_dir={root}/data", *args.overrides]  # fmt: skip
                cfg = compose("multitask", overrides)
                seconds, samples = epoch_seconds(cfg)
                epoch = statistics.median(seconds[1:] or seconds)
                print(f"{name:<40} {precision:<11} {epoch:8.2f} {samples / epoch:10.1f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"(finished {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
