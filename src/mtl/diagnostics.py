"""Why tasks help or hurt each other: relations between task gradients on the shared parameters,
measured on every training batch and summarised per epoch (`diagnostics=true`).

Per pair of tasks (i, j), on the gradients g_i, g_j of their losses w.r.t. the shared parameters:
- cosine similarity cos(g_i, g_j), averaged over the epoch's steps;
- gradient-magnitude similarity 2‖g_i‖‖g_j‖ / (‖g_i‖² + ‖g_j‖²) (Yu et al. 2020, PCGrad): 1 when
  the norms are equal, towards 0 when one dominates;
- the fraction of steps whose gradients conflict (negative cosine);
and per ordered pair, the lookahead task affinity of Fifty et al. 2021 ("Efficiently Identifying
Task Groupings for Multi-Task Learning"): Z_{i→j} = 1 − L_j(θ − η·g_i) / L_j(θ), how much a step of
size η (the configured learning rate) on task i alone lowers task j's loss on the same batch
(positive: i helps j). The lookahead forwards run on a copy of the network and a forked random
state, so that switching diagnostics on does not change what the run learns.

Costs one Jacobian (a batched backward per task) and one forward per task per step when on;
nothing when off. Under DDP each process measures its own share of the batch and the epoch
summary averages over processes.
"""

from __future__ import annotations

import copy
from itertools import combinations
from typing import Any

import torch
from torchjd.autojac import jac

from mtl.methods.aggregation import chunk_size

EPS = 1e-12


class TaskRelations:
    def __init__(self, task_names: list[str]):
        self.task_names = list(task_names)
        self.pairs = list(combinations(range(len(self.task_names)), 2))
        self._reset()

    def _reset(self) -> None:
        k, p = len(self.task_names), len(self.pairs)
        # per pair: cosine, magnitude similarity, conflicting steps, steps; per ordered pair: affinity, steps
        self._pair_sums = torch.zeros(4, p, dtype=torch.float64)
        self._affinity_sums = torch.zeros(2, k, k, dtype=torch.float64)

    def observe(self, module: Any, x: torch.Tensor, y: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> None:
        """Measure one training batch (before the optimiser step; the graph is kept for it)."""
        net = module.net
        names = {id(p): n for n, p in net.named_parameters()}
        shared = [p for p in net.shared_parameters() if p.requires_grad]
        if len(self.task_names) < 2 or not shared:
            return
        values = torch.stack([losses[name] for name in self.task_names])
        jacobians = jac(values, shared, retain_graph=True, parallel_chunk_size=chunk_size(values))
        grads = torch.cat([j.flatten(1) for j in jacobians], dim=1).detach()
        self._observe_gradients(grads)
        lr = float(module.optim["lr"])
        with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            # A throwaway copy takes the lookahead steps: the real parameters are saved in the graph
            # for the coming backward, and torch.func.functional_call mishandles the aliased blocks.
            shadow = copy.deepcopy(net)
            shadow_params = dict(shadow.named_parameters())
            targets = [shadow_params[names[id(p)]] for p in shared]
            base = values.detach()
            offsets = [p.numel() for p in shared]
            for i in range(len(self.task_names)):
                for target, p, g in zip(targets, shared, grads[i].split(offsets)):
                    target.copy_(p - lr * g.view_as(p))
                after = module.losses(shadow(x), y)
                for j, name in enumerate(self.task_names):
                    if base[j] > 0:
                        self._affinity_sums[0, i, j] += float(1.0 - after[name] / base[j])
                        self._affinity_sums[1, i, j] += 1

    def _observe_gradients(self, grads: torch.Tensor) -> None:
        norms = grads.norm(dim=1)
        gram = grads @ grads.T
        for column, (i, j) in enumerate(self.pairs):
            if norms[i] <= EPS or norms[j] <= EPS:
                continue  # a task without labels in this batch has no gradient to compare
            cosine = float(gram[i, j] / (norms[i] * norms[j]))
            magnitude = float(2 * norms[i] * norms[j] / (norms[i] ** 2 + norms[j] ** 2))
            self._pair_sums[:, column] += torch.tensor([cosine, magnitude, float(cosine < 0), 1.0], dtype=torch.float64)

    def summarise(self, module: Any) -> dict[str, Any]:
        """The epoch's means (averaged over DDP processes too), then start a new epoch."""
        pair_sums, affinity_sums = self._pair_sums, self._affinity_sums
        trainer = getattr(module, "_trainer", None)
        if trainer is not None and trainer.world_size > 1:
            pair_sums = module.all_gather(pair_sums.to(module.device)).sum(0).cpu()
            affinity_sums = module.all_gather(affinity_sums.to(module.device)).sum(0).cpu()
        self._reset()
        return summary(self.task_names, self.pairs, pair_sums, affinity_sums)


def summary(task_names: list[str], pairs: list[tuple[int, int]], pair_sums: torch.Tensor, affinity_sums: torch.Tensor) -> dict[str, Any]:
    def mean(total: torch.Tensor, count: torch.Tensor) -> float | None:
        return float(total / count) if count > 0 else None

    return {
        "pairs": [
            {
                "tasks": [task_names[i], task_names[j]],
                "cosine": mean(pair_sums[0, c], pair_sums[3, c]),
                "magnitude_similarity": mean(pair_sums[1, c], pair_sums[3, c]),
                "conflict_fraction": mean(pair_sums[2, c], pair_sums[3, c]),
                "steps": int(pair_sums[3, c]),
            }
            for c, (i, j) in enumerate(pairs)
        ],
        "affinity": [
            {"from": task_names[i], "to": task_names[j], "value": mean(affinity_sums[0, i, j], affinity_sums[1, i, j])}
            for i in range(len(task_names))
            for j in range(len(task_names))
            if i != j
        ],
    }
