"""Per-step training time of every method relative to `ew`, and against LibMTL's weighting code.

    .venv/bin/python bench/bench_methods.py [--steps 15] [--warmup 3] [--width 16] [--libmtl DIR]

One process, one network (the cnn backbone, hard sharing, fruits' two tasks), one batch of 64
images repeated: each method trains `warmup + steps` steps through the real path (the
LightningModule under a Lightning Trainer, manual optimisation for gradient methods) and the
median step time is compared with `ew`'s. A gradient-aggregation method should cost about one
extra backward per task (the Jacobian); much more than that is a defect.

LibMTL (`pip install --no-deps --target DIR LibMTL`, weighting code only: its package
__init__ pulls its trainer, so the weighting modules are loaded without it) runs the same
methods in a plain PyTorch loop over the same network and batch; its ratios to its own EW
loop are printed beside ours. A plain-PyTorch EW loop shows what Lightning itself adds.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mtl.methods import METHODS, build_method
from mtl.models.net import MultiTaskNet
from mtl.module import MultiTaskModule
from mtl.tasks import Task

TASKS = [
    Task("fruit", "multiclass", ("apple", "orange", "banana")),
    Task("color", "multiclass", ("red", "green", "yellow", "orange", "brown", "blue", "purple")),
]
OPTIM = {"name": "adamw", "lr": 0.002, "weight_decay": 0.0001, "momentum": 0.9}
# ours -> (LibMTL class, its backward() settings)
LIBMTL = {
    "ew": ("EW", {}),
    "uw": ("UW", {}),
    "dwa": ("DWA", {"T": 2.0}),
    "rlw": ("RLW", {"dist": "Normal"}),
    "gradnorm": ("GradNorm", {"alpha": 1.5}),
    "mgda": ("MGDA", {"mgda_gn": "none"}),
    "pcgrad": ("PCGrad", {}),
    "cagrad": ("CAGrad", {"calpha": 0.4, "rescale": 1}),
    "graddrop": ("GradDrop", {"leak": 0.0}),
}


def make_net(width: int) -> MultiTaskNet:
    torch.manual_seed(0)
    return MultiTaskNet(TASKS, (3, 32, 32), {"name": "cnn", "width": width, "blocks": 3}, {"hidden": 0}, {"name": "hps"})


def make_batch(n: int = 64):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
    y = {t.name: torch.randint(0, len(t.classes), (n,), generator=g) for t in TASKS}
    return x, y


class StepTimer(pl.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._start)


class Repeat(torch.utils.data.Dataset):
    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


def ours(name: str, batch, width: int, warmup: int, steps: int) -> float:
    weighting = build_method(OmegaConf.create({"name": name}), [t.name for t in TASKS])
    module = MultiTaskModule(make_net(width), weighting, OPTIM)
    timer = StepTimer()
    loader = torch.utils.data.DataLoader(Repeat(batch, warmup + steps), batch_size=None)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=warmup + steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(module, loader)
    return statistics.median(timer.times[warmup:])


def load_libmtl(directory: str) -> types.ModuleType:
    """LibMTL's weighting subpackage alone (its package __init__ imports its trainer)."""
    package = types.ModuleType("LibMTL")
    package.__path__ = [str(Path(directory) / "LibMTL")]
    sys.modules["LibMTL"] = package
    return importlib.import_module("LibMTL.weighting")


def libmtl(weighting_module, name: str, batch, width: int, warmup: int, steps: int) -> float:
    cls_name, settings = LIBMTL[name]
    net = make_net(width)
    method = type("Harness", (getattr(weighting_module, cls_name),), {})()
    shared = [p for p in net.shared_parameters()]
    method.task_num, method.task_name, method.device, method.rep_grad = len(TASKS), [t.name for t in TASKS], "cpu", False
    method.epoch = 2  # past the warm-up epochs where DWA and GradNorm are plain sums
    method.train_loss_buffer = np.ones((len(TASKS), 4))
    method.get_share_params = lambda: shared
    method.zero_grad_share_params = lambda: [p.grad.zero_() for p in shared if p.grad is not None]
    method.init_param()
    optimizer = torch.optim.AdamW([*net.parameters(), *method.parameters()], lr=OPTIM["lr"], weight_decay=OPTIM["weight_decay"])
    x, y = batch

    def backward() -> None:
        out = net(x)
        method.backward(torch.stack([F.cross_entropy(out[t.name], y[t.name]) for t in TASKS]), **settings)

    return median_step(optimizer, backward, warmup, steps)


def plain_ew(batch, width: int, warmup: int, steps: int) -> float:
    net = make_net(width)
    optimizer = torch.optim.AdamW(net.parameters(), lr=OPTIM["lr"], weight_decay=OPTIM["weight_decay"])
    x, y = batch

    def backward() -> None:
        out = net(x)
        sum(F.cross_entropy(out[t.name], y[t.name]) for t in TASKS).backward()

    return median_step(optimizer, backward, warmup, steps)


def median_step(optimizer, backward, warmup: int, steps: int) -> float:
    """Median seconds of one optimisation step (zero_grad, `backward`, step) after `warmup` steps."""
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--libmtl", default=None, help="directory LibMTL was pip-installed into with --target")
    args = parser.parse_args()
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    batch = make_batch()
    lib = None
    if args.libmtl:
        try:
            lib = load_libmtl(args.libmtl)
        except Exception as e:  # report, and bench ours alone
            print(f"LibMTL could not be loaded from {args.libmtl}: {type(e).__name__}: {e}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cnn width {args.width}, batch 64, "
          f"median of {args.steps} steps after {args.warmup} warm-up")  # fmt: skip
    plain = plain_ew(batch, args.width, args.warmup, args.steps)
    names = ["ew"] + [n for n in METHODS.names() if n != "ew"]
    results = {name: ours(name, batch, args.width, args.warmup, args.steps) for name in names}
    lib_results, lib_failures = {}, {}
    for name in LIBMTL if lib is not None else []:
        try:
            lib_results[name] = libmtl(lib, name, batch, args.width, args.warmup, args.steps)
        except Exception as e:  # a LibMTL defect: say which, and go on
            lib_failures[name] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    print(f"plain PyTorch EW loop: {plain * 1000:.1f} ms/step; mtl ew under Lightning: {results['ew'] * 1000:.1f} ms/step")
    print("| method | mtl ms/step | × mtl ew | LibMTL ms/step | × LibMTL EW | mtl / LibMTL |")
    print("|---|---|---|---|---|---|")
    for name in names:
        line = f"| {name} | {results[name] * 1000:.1f} | {results[name] / results['ew']:.2f} |"
        if name in lib_results:
            theirs = lib_results[name]
            line += f" {theirs * 1000:.1f} | {theirs / lib_results['ew']:.2f} | {results[name] / theirs:.2f} |"
        else:
            line += " — | — | — |"
        print(line, flush=True)
    for name, failure in lib_failures.items():
        print(f"LibMTL {LIBMTL[name][0]} failed: {failure}")


if __name__ == "__main__":
    main()
