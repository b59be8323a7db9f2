"""Gradient aggregation (Jacobian descent) through torchjd.

Each step, the Jacobian of the task losses with respect to the shared parameters (one row per
task) is reduced to one update by a torchjd aggregator; task-specific parameters (heads, and
e.g. MMoE gates or MTAN attention) get the gradient of their own task's loss. This needs manual
optimisation: the method calls `module.manual_backward` with the stacked losses, so Lightning's
precision plugin scales them, and Lightning then hands them back through `module.backward` to
`jacobian_backward`; the step goes through `module.optimizers()`.
"""

from __future__ import annotations

from typing import Any

import torch
from torchjd import aggregation as agg
from torchjd.autojac import backward as jacobian_of, jac_to_grad

from mtl.errors import UserError
from mtl.methods.base import METHODS, Weighting, stacked


class GradientAggregation(Weighting):
    manual_backward = True

    def __init__(self, task_names: list[str], **settings: Any):
        super().__init__(task_names)
        try:
            self.aggregator = self.make_aggregator(len(self.task_names), **settings)
        except ImportError as e:
            raise UserError(f"method {type(self).__name__} needs an optional dependency: {e}") from None
        self._weights: list[torch.Tensor] = []

    def make_aggregator(self, n_tasks: int, **settings: Any) -> agg.Aggregator:
        raise NotImplementedError

    def check_trainer(self, trainer_cfg: Any) -> None:
        name = self.method_name
        if _distributed(trainer_cfg):
            raise UserError(
                f"method={name} aggregates per-task gradients, which under DDP would only see each process's "
                "share of the batch; run it on one device (trainer.devices=1, trainer.num_nodes=1, "
                "trainer.strategy=auto) or use a loss-weighting method (ew, static, uw, dwa, rlw, gradnorm)"
            )
        if trainer_cfg.get("gradient_clip_val"):
            raise UserError(
                f"method={name} steps the optimiser itself, so Lightning cannot clip gradients; "
                "drop trainer.gradient_clip_val or use a loss-weighting method"
            )
        if (trainer_cfg.get("accumulate_grad_batches") or 1) != 1:
            raise UserError(f"method={name} takes one step per batch; drop trainer.accumulate_grad_batches")

    def backward(self, module: Any, losses: dict[str, torch.Tensor], penalty: torch.Tensor | None) -> None:
        optimizer = module.optimizers()
        optimizer.zero_grad()
        objectives = stacked(losses)
        if penalty is not None:
            objectives = torch.cat([objectives, penalty.reshape(1)])
        module.manual_backward(objectives)  # comes back scaled, through module.backward
        optimizer.step()

    def jacobian_backward(self, net: Any, objectives: torch.Tensor) -> None:
        """Gradients from the stacked task losses (and, last, a fine-tune penalty if any)."""
        n_tasks = len(self.task_names)
        if len(objectives) > n_tasks:  # the penalty is a regulariser, not a task: its plain gradient
            torch.autograd.backward(objectives[n_tasks], retain_graph=True)
        shared = [p for p in net.shared_parameters() if p.requires_grad]
        specific = [p for p in net.task_parameters() if p.requires_grad]
        jacobian_of(objectives[:n_tasks], inputs=shared + specific, parallel_chunk_size=chunk_size(objectives))
        for p in specific:  # only its own task's row is non-zero
            grad = p.jac.sum(0)
            p.grad = grad if p.grad is None else p.grad + grad
            del p.jac
        if shared:
            weights = jac_to_grad(shared, self.aggregator)
            if weights is not None:
                self._weights.append(weights.detach().float())

    def current_weights(self) -> dict[str, float]:
        """Mean over the epoch of the weights the aggregator gave the task gradients; empty for
        aggregators that do not combine the gradients linearly (GradDrop, ConFIG)."""
        if not self._weights:
            return {}
        return dict(zip(self.task_names, torch.stack(self._weights).mean(0).tolist()))

    def on_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        self._weights = []


def chunk_size(tensor: torch.Tensor) -> int | None:
    """torchjd's vmap over the task rows pays off on accelerators; on the CPU one backward per
    task in turn is faster (measured in bench/bench_methods.py)."""
    return 1 if tensor.device.type == "cpu" else None


def _distributed(trainer_cfg: Any) -> bool:
    """Whether these trainer settings start more than one training process."""
    strategy = str(trainer_cfg.get("strategy") or "auto").lower()
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, str) and "," in devices:
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, str):
        # "auto" takes every accelerator there is: more than one only off the CPU
        devices = int(devices) if devices.lstrip("-").isdigit() else (1 if trainer_cfg.get("accelerator") == "cpu" else -1)
    count = devices if isinstance(devices, int) else len(list(devices))
    return (
        count > 1
        or count == -1
        or (trainer_cfg.get("num_nodes") or 1) > 1
        or any(s in strategy for s in ("ddp", "fsdp", "deepspeed"))
    )


def _preference(pref_vector: list[float] | None, n_tasks: int) -> torch.Tensor | None:
    if pref_vector is None:
        return None
    if len(pref_vector) != n_tasks:
        raise UserError(f"method.pref_vector has {len(pref_vector)} entries; give one per task ({n_tasks})")
    return torch.tensor([float(v) for v in pref_vector])


@METHODS.register("mgda")
class MGDA(GradientAggregation):
    """MGDA (Désidéri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective
    Optimization"): the minimum-norm point of the convex hull of the task gradients."""

    def make_aggregator(self, n_tasks, epsilon: float = 0.001, max_iters: int = 100):
        return agg.MGDA(epsilon=epsilon, max_iters=max_iters)


@METHODS.register("pcgrad")
class PCGrad(GradientAggregation):
    """PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"): each task gradient is
    projected onto the normal plane of every gradient it conflicts with, then summed."""

    def make_aggregator(self, n_tasks):
        return agg.PCGrad()


@METHODS.register("cagrad")
class CAGrad(GradientAggregation):
    """CAGrad (Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning"): the
    update that maximises the worst task's improvement within a ball of radius c·‖ḡ‖ around the
    mean gradient ḡ."""

    def make_aggregator(self, n_tasks, c: float = 0.4, norm_eps: float = 0.0001):
        return agg.CAGrad(c=c, norm_eps=norm_eps)


@METHODS.register("imtl_g")
class IMTLG(GradientAggregation):
    """IMTL-G (Liu et al. 2021, "Towards Impartial Multi-task Learning"): the update whose
    projections onto every task's unit gradient are equal."""

    def make_aggregator(self, n_tasks):
        return agg.IMTLG()


@METHODS.register("nash_mtl")
class NashMTL(GradientAggregation):
    """Nash-MTL (Navon et al. 2022, "Multi-Task Learning as a Bargaining Game"): weights α solving
    the Nash bargaining condition GᵀG·α = 1/α (needs cvxpy and ecos)."""

    def make_aggregator(self, n_tasks, max_norm: float = 1.0, update_weights_every: int = 1, optim_niter: int = 20):
        return agg.NashMTL(n_tasks, max_norm=max_norm, update_weights_every=update_weights_every, optim_niter=optim_niter)

    # torchjd keeps Nash-MTL's state (the last weights, the step count) in plain numpy
    # attributes; carried through the checkpoint here so a resumed run continues from them.
    def get_extra_state(self) -> dict[str, Any]:
        state = self.aggregator.weighting
        return {"alpha": torch.as_tensor(state.prvs_alpha), "step": float(state.step)}

    def set_extra_state(self, saved: dict[str, Any]) -> None:
        state = self.aggregator.weighting
        state.prvs_alpha = saved["alpha"].numpy()
        state.step = saved["step"]
        if state.step:
            state._init_optim_problem()  # torchjd builds its cvxpy problem on the first call only


@METHODS.register("aligned_mtl")
class AlignedMTL(GradientAggregation):
    """Aligned-MTL (Senushkin et al. 2023, "Independent Component Alignment for Multi-Task
    Learning"): aligns the principal components of the gradient matrix so that it is well
    conditioned, then combines."""

    def make_aggregator(self, n_tasks, pref_vector: list[float] | None = None, scale_mode: str = "min"):
        if scale_mode not in ("min", "median", "rmse"):
            raise UserError(f"method.scale_mode must be min, median or rmse, got {scale_mode!r}")
        return agg.AlignedMTL(pref_vector=_preference(pref_vector, n_tasks), scale_mode=scale_mode)


@METHODS.register("upgrad")
class UPGrad(GradientAggregation):
    """UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"): every task
    gradient projected onto the dual cone of all of them, then averaged: never conflicts with any."""

    def make_aggregator(self, n_tasks, pref_vector: list[float] | None = None):
        return agg.UPGrad(pref_vector=_preference(pref_vector, n_tasks))


@METHODS.register("graddrop")
class GradDrop(GradientAggregation):
    """GradDrop (Chen et al. 2020, "Just Pick a Sign: Optimizing Deep Multitask Models with
    Gradient Sign Dropout"): per coordinate, keeps only the gradients of one sign, chosen at
    random with the sign purity as probability."""

    def make_aggregator(self, n_tasks):
        return agg.GradDrop()


@METHODS.register("dualproj")
class DualProj(GradientAggregation):
    """DualProj (after Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual
    Learning"): the mean gradient projected onto the dual cone of the task gradients."""

    def make_aggregator(self, n_tasks, pref_vector: list[float] | None = None):
        return agg.DualProj(pref_vector=_preference(pref_vector, n_tasks))


@METHODS.register("config")
class ConFIG(GradientAggregation):
    """ConFIG (Liu et al. 2024, "ConFIG: Towards Conflict-free Training of Physics Informed
    Neural Networks"): the direction with equal positive cosine to every unit task gradient,
    scaled by the sum of their projections."""

    def make_aggregator(self, n_tasks, pref_vector: list[float] | None = None):
        return agg.ConFIG(pref_vector=_preference(pref_vector, n_tasks))


@METHODS.register("fairgrad")
class FairGrad(GradientAggregation):
    """FairGrad (Ban & Ji 2024, "Fair Resource Allocation in Multi-Task Learning"): the update
    that allocates each task an α-fair share of the improvement."""

    def make_aggregator(self, n_tasks, alpha: float = 1.0, max_iters: int | None = None):
        return agg.FairGrad(alpha=alpha, max_iters=max_iters)


@METHODS.register("rgw")
class RandomGradientWeighting(GradientAggregation):
    """Random gradient weighting (Lin et al. 2021, "Reasonable Effectiveness of Random Weighting:
    A Litmus Test for Multi-Task Learning", Algorithm 2): task gradients combined with
    softmax(z), z ~ N(0, I), drawn every step."""

    def make_aggregator(self, n_tasks):
        return agg.Random()
