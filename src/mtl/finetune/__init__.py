"""Sequential transfer: load a source checkpoint's weights, then fine-tune with a strategy."""

from mtl.finetune import gradual, l2sp, linear_probe, lp_ft  # noqa: F401  (registers)
from mtl.finetune.base import STRATEGIES, Strategy
from mtl.finetune.transfer import load_source, transfer_weights

__all__ = ["STRATEGIES", "Strategy", "build_strategy", "load_source", "transfer_weights"]


def build_strategy(cfg, net, max_epochs: int) -> Strategy:
    settings = dict(cfg)
    return STRATEGIES.get(settings.pop("strategy"))(net, max_epochs, **settings)
