"""Training throughput of `mtl run multitask` against a plain PyTorch loop, side by side.

    .venv/bin/python bench/bench_throughput.py [--epochs 2] [--repeats 3] [--threads N] [OVERRIDES...]
    .venv/bin/python bench/bench_throughput.py --breakdown [--repeats 3] [OVERRIDES...]

Both train the same network (built by mtl from the same config and seed) on the same in-memory
data with the same batch size, losses and optimiser. The plain loop indexes the data tensors
directly, the fastest loader there is; mtl runs its whole fit (Lightning loop, torchmetrics,
progress bar, checkpoints). Two measurements:

- paired steps: one mtl fit in which every mtl step is followed by one plain-loop step on its own
  copy of the network (from mtl's last per-step hook, after the progress bar's). Each mtl step is
  timed from the end of the previous plain step to the start of the next, so the two alternate
  step by step and a burst of load on a shared machine hits both alike; the median over pairs
  of plain/mtl time is the fraction of the plain loop's throughput that mtl reaches per step;
- whole fit: plain loop (validating each epoch) and mtl fit alternate, `repeats` times: median
  wall time of each, per-epoch validation and mtl's checkpoints and logging included.

--breakdown measures where mtl's extra time per step goes: paired steps again, `repeats` times,
with the progress bar off, with the per-step training metrics off (patched out here, for the
measurement only), and both; it prints mtl's median extra milliseconds per step in each case.
Use it with a model whose step costs next to nothing (e.g. model=mlp model.backbone.hidden=[8]),
where the extra time is all there is.

OVERRIDES are mtl's (default: the fruits data, cnn width 32, batch 64, progress bar on).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch

from mtl.config import compose
from mtl.module import task_loss
from mtl.train import prepare, train


class PlainLoop:
    """The plain PyTorch training loop, one step at a time, on its own copy of the network."""

    def __init__(self, cfg: Any):
        prepared = prepare(cfg, log=lambda *a: None)  # same seed as mtl's: the same initial weights
        self.net, self.tasks, self.data = prepared.module.net, prepared.module.tasks, prepared.data
        self.net.train()
        self.optimiser = torch.optim.AdamW(self.net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.batch_size = cfg.loader.batch_size
        self.batches = self.epoch_batches(0)

    def epoch_batches(self, epoch: int):
        x, y = self.data.splits["train"].x, self.data.splits["train"].y
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield x[index], {name: labels[index] for name, labels in y.items()}

    def step(self, batch: Any = None) -> None:
        x, y = batch if batch is not None else next(self.batches)
        outputs = self.net(x)
        loss = sum(task_loss(task, outputs[name], y[name]) for name, task in self.tasks.items())
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()

    def validate(self) -> dict[str, float]:
        x, y = self.data.splits["val"].x, self.data.splits["val"].y
        correct = {name: 0 for name in self.tasks}
        self.net.eval()
        with torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                outputs = self.net(x[start : start + self.batch_size])
                for name in self.tasks:
                    correct[name] += int((outputs[name].argmax(1) == y[name][start : start + self.batch_size]).sum())
        self.net.train()
        return {name: c / len(x) for name, c in correct.items()}

    def fit(self, epochs: int) -> float:
        """Seconds to train `epochs` epochs, validating after each."""
        started = time.perf_counter()
        for epoch in range(epochs):
            for batch in self.epoch_batches(epoch):
                self.step(batch)
            self.validate()
        return time.perf_counter() - started


def paired_steps(cfg: Any) -> tuple[list[float], list[float]]:
    """(mtl step times, plain step times), alternating step by step within one mtl fit."""
    prepared = prepare(cfg, log=lambda *a: None)
    plain = PlainLoop(cfg)
    times: dict[str, list[float]] = {"mtl": [], "plain": []}
    last: list[float | None] = [None]

    def after_mtl_step(*args: Any) -> None:
        start = time.perf_counter()
        if last[0] is not None:
            times["mtl"].append(start - last[0])
        try:
            plain.step()
        except StopIteration:
            plain.batches = plain.epoch_batches(len(times["plain"]))
            plain.step()
        end = time.perf_counter()
        times["plain"].append(end - start)
        last[0] = end

    def new_epoch() -> None:
        last[0] = None  # validation ran in between: not a step

    prepared.module.on_train_batch_end = after_mtl_step
    prepared.module.on_train_epoch_start = new_epoch
    train(prepared, log=lambda *a: None)
    pairs = len(times["mtl"])
    return times["mtl"], times["plain"][-pairs:] if pairs else []


def mtl_fit(cfg: Any) -> float:
    """Seconds of one whole mtl fit (its test excluded)."""
    return train(prepare(cfg, log=lambda *a: None), log=lambda *a: None)["timing"]["fit_s"]


def breakdown(base: list[str], repeats: int) -> None:
    import mtl.module

    update = mtl.module.MultiTaskModule._update

    def eval_metrics_only(self: Any, stage: str, outputs: Any, targets: Any) -> None:
        if stage != "train":
            update(self, stage, outputs, targets)

    variants = {
        "as is": ([], update),
        "no progress bar": (["trainer.enable_progress_bar=false"], update),
        "no training metrics": ([], eval_metrics_only),
        "neither": (["trainer.enable_progress_bar=false"], eval_metrics_only),
    }
    extra: dict[str, list[float]] = {name: [] for name in variants}
    warnings.filterwarnings("ignore", message=".*compute.* was called before the ``update``")  # patched out
    try:
        for _ in range(repeats):
            for name, (overrides, patched) in variants.items():
                mtl.module.MultiTaskModule._update = patched
                mtl_steps, plain_steps = paired_steps(compose("multitask", [*base, *overrides]))
                extra[name].extend(m - p for m, p in zip(mtl_steps, plain_steps))
    finally:
        mtl.module.MultiTaskModule._update = update
    print(f"config: {' '.join(base[2:]) or '(defaults)'}; {base[0]}; torch threads {torch.get_num_threads()}")
    for name, values in extra.items():
        print(f"{name:<20} mtl step − plain step: {statistics.median(values) * 1000:6.2f} ms (median of {len(values)} pairs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--breakdown", action="store_true", help="where mtl's extra time per step goes")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs_dir = tempfile.mkdtemp(prefix="mtl-bench-throughput-")
    try:
        overrides = [f"trainer.max_epochs={args.epochs}", f"runs_dir={runs_dir}", *args.overrides]
        cfg = compose("multitask", overrides)
        if args.breakdown:
            PlainLoop(cfg).fit(1)
            return breakdown(overrides, args.repeats)
        PlainLoop(cfg).fit(1)  # untimed: data generation, imports, kernel and allocator warm-up
        mtl_steps, plain_steps = paired_steps(cfg)
        ratios = [p / m for m, p in zip(mtl_steps, plain_steps)]
        fits: dict[str, list[float]] = {"plain": [], "mtl": []}
        for _ in range(args.repeats):
            fits["plain"].append(PlainLoop(cfg).fit(args.epochs))
            fits["mtl"].append(mtl_fit(cfg))
        examples = len(PlainLoop(cfg).data.splits["train"]) * args.epochs
        batch = cfg.loader.batch_size
        step = {"plain": statistics.median(plain_steps), "mtl": statistics.median(mtl_steps)}
        fit = {name: statistics.median(seconds) for name, seconds in fits.items()}
        print(f"config: {' '.join(args.overrides) or '(defaults)'}; batch {batch}, {args.epochs} epochs, "
              f"torch threads {torch.get_num_threads()}")  # fmt: skip
        print(f"{'':6} {'step ms':>8} {'samples/s':>10}   {'fit s':>7} {'samples/s':>10}")
        for name in ("plain", "mtl"):
            print(f"{name:6} {step[name] * 1000:8.2f} {batch / step[name]:10.1f}   {fit[name]:7.2f} {examples / fit[name]:10.1f}")
        print(f"mtl / plain throughput: per step {statistics.median(ratios):.3f} (median of {len(ratios)} paired steps), "
              f"whole fit {fit['plain'] / fit['mtl']:.3f} (median of {args.repeats} alternating fits)")
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
