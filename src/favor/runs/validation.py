"""Checking plain (parsed YAML) data against dataclass fields: the machinery behind `favor.runs.config`.

`build_section` turns a mapping into a dataclass, rejecting an unknown key (naming the section and the
valid keys) and a value of the wrong type (naming the key, the value and the expected type); a field whose
type is itself a dataclass is a nested section (``data.timeseries``), checked the same way.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "build_section",
    "check_choice",
    "check_min",
    "check_fraction",
    "parse_yaml",
    "set_dotted",
]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loading plus YAML 1.2 floats: ``3e-4`` is a float, not the string PyYAML makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely (no Python objects), with ``1e-3``-style floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


class ConfigError(ValueError):
    """An invalid run configuration; the message names the file (if any), section and key."""


def set_dotted(data: dict[str, Any], keys: list[str], value: Any, *, what: str) -> None:
    """``data[keys[0]]...[keys[-1]] = value`` in plain config data, creating missing sections; a key on the
    way that holds something other than a mapping is a `ConfigError` starting with ``what``."""
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def check_choice(section: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{section}.{key}={value!r}: expected one of {', '.join(choices)}")


def check_min(section: str, key: str, value: Any, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{section}.{key}={value!r}: expected an integer >= {minimum}")


def check_fraction(section: str, key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{section}.{key}={value!r}: expected a float in [0, 1)")


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` (parsed YAML) fits the dataclass field type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(args)
            and all(_type_ok(v, a) for v, a in zip(value, args, strict=True))
        )
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return True


def _wants_float(hint: Any, value: Any) -> bool:
    """An int given where the field is a float (or float | None): stored as a float."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return hint is float or float in typing.get_args(hint)


def _type_name(hint: Any) -> str:
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build_section(cls: type, data: Any, section: str, *, internal: dict[str, Any] | None = None) -> Any:
    """Validate ``data`` (a mapping or None) into a ``cls`` instance; nested dataclass fields recurse.

    Fields marked ``metadata={"internal": True}`` are not keys of the file: they come from ``internal``.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"section {section!r}: expected a mapping of keys to values, got {data!r}")
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    hints = {f.name: typing.get_type_hints(cls)[f.name] for f in fields}
    known = [f.name for f in fields]
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(f"unknown key {key!r} in section {section!r}; valid keys: {', '.join(known)}")
        if not _type_ok(value, hints[key]):
            got, expected = type(value).__name__, _type_name(hints[key])
            raise ConfigError(f"{section}.{key}={value!r}: wrong type {got}, expected {expected}")
    values = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]):
            values[key] = build_section(hints[key], value, f"{section}.{key}")
        else:
            values[key] = float(value) if _wants_float(hints[key], value) else value
    return cls(**values, **(internal or {}))
