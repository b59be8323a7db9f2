"""Multitask methods, chosen by name with `method=NAME`. Importing this package registers them."""

from mtl.methods import aggregation, dwa, ew, gradnorm, rlw, static, uw  # noqa: F401  (registers)
from mtl.methods.base import METHODS, Weighting

__all__ = ["METHODS", "Weighting", "build_method"]


def build_method(cfg, task_names: list[str]) -> Weighting:
    settings = dict(cfg)
    name = settings.pop("name")
    method = METHODS.get(name)
    try:
        weighting = method(task_names, **settings)
    except TypeError as e:
        from mtl.errors import UserError

        raise UserError(f"bad setting for method={name}: {e}; see conf/method/{name}.yaml for its settings") from None
    weighting.method_name = name
    return weighting
