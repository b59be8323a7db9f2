"""Multitask methods, chosen by name with `method=NAME`. Importing this package registers them."""

from mtl.methods import ew  # noqa: F401  (registers)
from mtl.methods.base import METHODS, Weighting

__all__ = ["METHODS", "Weighting", "build_method"]


def build_method(cfg, task_names: list[str]) -> Weighting:
    settings = dict(cfg)
    return METHODS.get(settings.pop("name"))(task_names, **settings)
