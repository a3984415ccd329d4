"""Options as dataclass fields: one declaration serves the command line and the TOML configs.

A hyperparameter is a dataclass field made with :func:`option` (default, help,
choices, range check). :func:`add_arguments` turns the fields into argparse
flags (``max_weight`` becomes ``--max-weight``; the help shows the default),
:func:`coerce` turns a command-line string or a TOML value into the field's type
with an error that names the option, and :func:`check` validates a value.

>>> import dataclasses
>>> @dataclasses.dataclass
... class Options:
...     clip: float = option(0.01, "smallest propensity", check=lambda v: v >= 0, requirement="non-negative")
>>> coerce(Options, "clip", "0.5", "--clip")
0.5
>>> coerce(Options, "clip", "-1", "--clip")
Traceback (most recent call last):
...
ultr.options.OptionError: --clip: must be non-negative, got -1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Callable


class OptionError(ValueError):
    """A bad option value; the message starts with the flag or config key."""


def option(default: Any, help: str, *, choices: Any = None, check: Callable[[Any], bool] | None = None,
           requirement: str = "", flag: str | None = None, **metadata) -> Any:
    """A dataclass field with what the command line and configs need to know about it.

    Args:
      default: the value that works (see DEVELOPERS.md: defaults are the settings that work).
      help: one line for ``--help`` and the docs.
      choices: allowed values (a sequence, or a callable returning one, e.g. a registry's names).
      check: predicate on the value; ``requirement`` says in words what it demands.
      flag: the command-line flag when it is not ``--`` plus the field name with dashes.
    """
    meta = {"help": help, "choices": choices, "check": check, "requirement": requirement, "flag": flag, **metadata}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def positive(v) -> bool:
    return v > 0


def non_negative(v) -> bool:
    return v >= 0


def fraction(v) -> bool:
    return 0 <= v < 1


def unit_interval(v) -> bool:
    return 0 < v <= 1


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init and "help" in f.metadata}


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _choices(field: dataclasses.Field):
    choices = field.metadata.get("choices")
    return choices() if callable(choices) else choices


def _base_types(annotation) -> tuple[list[Any], bool]:
    """The non-None members of an annotation and whether None is allowed."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members, len(members) < len(typing.get_args(annotation))
    return [annotation], False


def _convert(value: Any, annotation, name: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise OptionError(f"{name}: must be a list, got {value!r}")
        return tuple(_convert(v, item, name) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise OptionError(f"{name}: must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise OptionError(f"{name}: must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise OptionError(f"{name}: must be an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise OptionError(f"{name}: must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"{name}: must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise OptionError(f"{name}: must be a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise OptionError(f"{name}: must be a string, got {value!r}")
        return value
    return value


def coerce(cls, key: str, value: Any, where: str | None = None) -> Any:
    """``value`` (a command-line string or a TOML value) as field ``key`` of ``cls``, checked."""
    field = fields(cls)[key]
    name = where or key
    members, optional = _base_types(_hints(cls)[key])
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise OptionError(f"{name}: needs a value")
    errors = []
    for annotation in members:
        try:
            converted = _convert(value, annotation, name)
            break
        except OptionError as error:
            errors.append(error)
    else:
        raise errors[0]
    check(field, converted, name)
    return converted


def check(field: dataclasses.Field, value: Any, name: str | None = None) -> None:
    """Raise :class:`OptionError` when ``value`` breaks the field's choices or range."""
    name = name or field.name
    if value is None:
        return
    choices = _choices(field)
    from click_models.registry import Registry

    if choices is not None and not isinstance(choices, Registry):  # a registry's lookup names its own concept
        from click_models.registry import normalise

        allowed = {normalise(c) for c in choices}
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if normalise(item) not in allowed:
                raise OptionError(f"{name}: unknown value {item!r}; choose from {', '.join(map(str, choices))}")
    predicate = field.metadata.get("check")
    if predicate is not None:
        items = value if isinstance(value, tuple) else (value,)
        if not items and isinstance(value, tuple):
            raise OptionError(f"{name}: must not be empty")
        for item in items:
            if not predicate(item):
                raise OptionError(f"{name}: must be {field.metadata.get('requirement') or 'valid'}, got {value!r}")


def check_all(instance, prefix: str = "") -> None:
    """Check every option field of a dataclass instance."""
    for key, field in fields(type(instance)).items():
        check(field, getattr(instance, key), f"{prefix}{key}")


def describe_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, *, skip: tuple[str, ...] = (),
                  users: dict[str, str] | None = None, seen: set[str] | None = None) -> None:
    """Add a flag per option field of ``cls``; every flag defaults to None (not given).

    ``users`` appends "(used by ...)" to a field's help; ``seen`` collects the fields
    already added (a field shared by several dataclasses gets one flag).
    """
    for key, field in fields(cls).items():
        if key in skip or (seen is not None and key in seen):
            continue
        if seen is not None:
            seen.add(key)
        help_text = field.metadata["help"]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if users and key in users:
            help_text += f" ({users[key]})"
        if "default" not in help_text:
            help_text += f" (default: {describe_default(default)})"
        choices = _choices(field)
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices is not None else None
        parser.add_argument(flag_of(field), dest=key, default=None, help=help_text, metavar=metavar)
