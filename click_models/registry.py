"""Registries: one per concept (click models, policies, estimators, learners, ...).

A registry maps a name to an object (usually a class) declared once, beside
that object. Names live only at the edge: the command line's choices, the
TOML validation of ``ultr run`` and the tables in ``docs/`` are read from the
registries, and the core passes the objects themselves around.

Lookups forgive case and ``-``/``_``; an unknown name is a :class:`UnknownNameError`
that lists the choices.

>>> shapes = Registry("shape")
>>> @shapes.register("square", aliases=("quad",))
... class Square:
...     '''Four equal sides.'''
>>> shapes["QUAD"] is Square
True
>>> shapes.canonical("square")
'square'
>>> shapes["circle"]
Traceback (most recent call last):
...
click_models.registry.UnknownNameError: unknown shape 'circle'; choose from square
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that is not in a registry (a user error: the message lists the choices)."""

    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0]) if self.args else ""


def normalise(name: str) -> str:
    """The form names are compared in: lower case, ``_`` as ``-``."""
    return str(name).strip().lower().replace("_", "-")


def first_line(doc: str | None) -> str:
    text = (doc or "").strip()
    return text.splitlines()[0].strip() if text else ""


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name, aliases and one-line summary."""

    name: str
    value: T
    summary: str = ""
    aliases: tuple[str, ...] = ()


class Registry(MutableMapping, Generic[T]):
    """Names of one concept mapped to the objects that implement them, in registration order."""

    def __init__(self, concept: str):
        self.concept = concept
        self._entries: dict[str, Entry[T]] = {}
        self._lookup: dict[str, str] = {}

    # ------------------------------------------------------------------ registration
    def register(self, name: str | None = None, *, aliases: tuple[str, ...] = (), summary: str | None = None,
                 replace: bool = False) -> Callable[[T], T]:
        """Decorator that registers an object under ``name`` (default: its ``name`` attribute)."""

        def decorate(value: T) -> T:
            self.add(name or getattr(value, "name"), value, aliases=aliases, summary=summary, replace=replace)
            return value

        return decorate

    def add(self, name: str, value: T, *, aliases: tuple[str, ...] = (), summary: str | None = None,
            replace: bool = False) -> T:
        keys = [normalise(name), *(normalise(a) for a in aliases)]
        if not replace:
            for key in keys:
                if key in self._lookup and self._lookup[key] != name:
                    raise ValueError(f"{self.concept} {key!r} is already registered (as {self._lookup[key]!r})")
        if replace and name in self._entries:
            self.remove(name)
        if summary is None:
            summary = first_line(getattr(value, "__doc__", None)) if not isinstance(value, (str, int, float)) else ""
        self._entries[name] = Entry(name, value, summary, tuple(aliases))
        for key in keys:
            self._lookup[key] = name
        return value

    def remove(self, name: str) -> None:
        canonical = self.canonical(name)
        del self._entries[canonical]
        self._lookup = {k: v for k, v in self._lookup.items() if v != canonical}

    # ------------------------------------------------------------------ lookup
    def canonical(self, name: str, option: str | None = None) -> str:
        """The registered spelling of ``name`` (an alias or another case resolves too).

        ``option`` (a flag or config key) starts the error message of an unknown name.
        """
        try:
            return self._lookup[normalise(name)]
        except (KeyError, AttributeError, TypeError):
            what = f"{option}: unknown {name!r}" if option else f"unknown {self.concept} {name!r}"
            raise UnknownNameError(f"{what}; choose from {', '.join(self)}") from None

    def lookup(self, name: str, option: str | None = None) -> T:
        """The object registered as ``name``; an unknown name's error starts with ``option``."""
        return self._entries[self.canonical(name, option)].value

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def resolve(self, item: str | Any) -> T:
        """The object for a name, or the object itself when it is not a string."""
        return self[item] if isinstance(item, str) else item

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)].value

    def __setitem__(self, name: str, value: T) -> None:
        self.add(name, value, replace=True)

    def __delitem__(self, name: str) -> None:
        self.remove(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.concept!r}: {', '.join(self)})"

    # ------------------------------------------------------------------ docs
    def _spellings(self, entry: Entry[T]) -> list[str]:
        """Other accepted spellings of an entry: its aliases and its dashed form."""
        names = [normalise(entry.name)] if normalise(entry.name) != entry.name else []
        return names + [a for a in entry.aliases if normalise(a) not in names]

    def markdown_table(self, columns: dict[str, Callable[[Entry[T]], str]] | None = None) -> str:
        """A Markdown table of the entries: name, summary and any extra ``columns``."""
        columns = {"name": lambda e: f"`{e.name}`" + "".join(f" (`{normalise(a)}`)" for a in self._spellings(e)),
                   "what it is": lambda e: e.summary, **(columns or {})}
        lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        for entry in self.entries():
            lines.append("| " + " | ".join(str(fn(entry)).replace("|", "\\|") for fn in columns.values()) + " |")
        return "\n".join(lines)
