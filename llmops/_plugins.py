"""Named registries for the extension points: scorers, providers (and, through them, what a
suite may name). Built-ins register at import; third-party packages register through Python
entry points (``llmops.scorers``, ``llmops.providers``: ``name = "package.module:object"``),
read on the first lookup of a name that is not built in (reading them costs ~60 ms), as pytest
plugins and inspect_ai's registry do. Unknown and duplicate names are errors that list the known
names."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Things of one kind by name.

    Args:
        kind: What the things are, for messages (``"assertion type"``).
        group: The entry-point group third-party packages register under.
    """

    def __init__(self, kind: str, *, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._loaded = group is None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name``.

        Raises:
            ValueError: ``name`` is taken.
        """
        if name in self._items:
            raise ValueError(f"duplicate {self.kind} {name!r}: it is registered already")
        self._items[name] = item
        return item

    def add(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`register`."""

        def decorate(item: T) -> T:
            return self.register(name, item)

        return decorate

    def get(self, name: str) -> T:
        """The thing named ``name``.

        Raises:
            ValueError: No such name (the message lists the known ones).
        """
        if name not in self._items:  # entry points are read only when a name is not built in
            self._load()
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(self.unknown(name)) from None

    def __getitem__(self, name: str) -> T:
        """Same as :meth:`get`."""
        return self.get(name)

    def unknown(self, name: str) -> str:
        """The message for an unknown name: a suggestion, or the known names."""
        self._load()
        close = difflib.get_close_matches(name, list(self._items), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(self._items)}"
        return f"unknown {self.kind} {name!r} ({hint})"

    def names(self) -> tuple[str, ...]:
        """Every registered name, built-ins first."""
        self._load()
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from importlib.metadata import entry_points

        assert self.group is not None
        for point in entry_points(group=self.group):
            if point.name not in self._items:
                self.register(point.name, point.load())
