"""A name → entry registry with "did you mean" errors: one per option set (optimizers, LR schedulers, augment
policies, Tune schedulers, ...), so the spec's allowed values and the code that builds them are one list."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def unknown_value(what: str, value: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}; allowed: {', '.join(allowed)}"


class Registry(Generic[T]):
    """``registry.register(name)(entry)`` (or as a decorator), ``registry[name]``, ``name in registry``."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, replace: bool = False):
        def add(value: T) -> T:
            if name in self._entries and not replace:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def check(self, name) -> str | None:
        """None if ``name`` is registered, else the error message (with the allowed names)."""
        return None if name in self._entries else unknown_value(self.what, name, list(self._entries))

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise KeyError(unknown_value(self.what, name, list(self._entries))) from None

    def __contains__(self, name) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()
