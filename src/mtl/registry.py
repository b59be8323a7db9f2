"""Name -> implementation registries: a backbone, architecture, method or fine-tune strategy
is chosen by name from config and lives in one place (the timm pattern)."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from mtl.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, config_key: str):
        self.what = what  # e.g. "backbone"
        self.config_key = config_key  # e.g. "model.backbone.name", for error messages
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise UserError(
                f"unknown {self.what} '{name}'{hint}; set {self.config_key} to one of {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)
