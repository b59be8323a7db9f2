from __future__ import annotations

import math

import torch
from torch import nn

from mtl.methods.base import METHODS, Weighting, stacked


@METHODS.register("gradnorm")
class GradNorm(Weighting):
    """GradNorm (Chen et al. 2018, "GradNorm: Gradient Normalization for Adaptive Loss Balancing in
    Deep Multitask Networks"). Learned weights w_t (renormalised to sum to K before each step)
    multiply the losses; w is trained on Σ_t |G_t − Ḡ·r_t^α|, where G_t = ‖∇_W w_t·L_t‖ on the last
    shared layer W (the shared parameters of the backbone's last block), Ḡ the mean of the G_t
    and r_t = (L_t / L_t(0)) / mean_s(L_s / L_s(0)) the task's relative inverse training rate.
    """

    def __init__(self, task_names: list[str], alpha: float = 1.5):
        super().__init__(task_names)
        self.alpha = alpha
        self.weights = nn.Parameter(torch.ones(len(self.task_names)))
        self.register_buffer("initial_losses", torch.full((len(self.task_names),), math.nan))
        self._layer: list[nn.Parameter] = []

    def attach(self, net: nn.Module) -> None:
        shared = {id(p) for p in net.shared_parameters()}
        self._layer = [p for p in net.backbone.blocks[-1].parameters() if id(p) in shared]

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        values = stacked(losses)
        k = len(values)
        with torch.no_grad():
            self.weights.clamp_(min=1e-3).mul_(k / self.weights.sum())
            if torch.isnan(self.initial_losses).any():
                self.initial_losses.copy_(values.detach().clamp_min(1e-8))
        objective = (self.weights.detach() * values).sum()
        layer = [p for p in self._layer if p.requires_grad]
        if not layer or not torch.is_grad_enabled():
            return objective  # nothing shared trains (e.g. a frozen backbone): weights stay put
        norms = []
        for loss in values:
            grads = torch.autograd.grad(loss, layer, retain_graph=True, allow_unused=True)
            norms.append(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None)))
        weighted = self.weights * torch.stack(norms)  # gradient flows to the weights only
        ratios = values.detach() / self.initial_losses
        target = (weighted.mean() * (ratios / ratios.mean()) ** self.alpha).detach()
        return objective + (weighted - target).abs().sum()

    def current_weights(self) -> dict[str, float]:
        weights = self.weights.detach().clamp(min=1e-3)
        return dict(zip(self.task_names, (weights * len(weights) / weights.sum()).tolist()))
