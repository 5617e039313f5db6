"""Typed configs: ``--set key=value`` overrides, validation, and stable hashing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from typing import Any

from .errors import ClipbenchError


def _convert(value: str, annotation: Any, key: str) -> Any:
    """Convert the string ``value`` to the field type ``annotation`` or raise a one-line error."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        non_none = [a for a in args if a is not type(None)]
        if value.lower() in ("none", "null") and len(non_none) < len(args):
            return None
        last_error = None
        for option in non_none:
            try:
                return _convert(value, option, key)
            except ClipbenchError as error:
                last_error = error
        raise last_error or ClipbenchError(f"--set {key}: cannot parse {value!r}")
    if origin is typing.Literal:
        choices = [str(a) for a in args]
        if value not in choices:
            raise ClipbenchError(f"--set {key}: {value!r} is not one of {', '.join(choices)}")
        return args[choices.index(value)]
    if origin in (tuple, list):
        parts = [p for p in value.split(",") if p != ""]
        inner = args[0] if args else str
        return (tuple if origin is tuple else list)(_convert(p, inner, key) for p in parts)
    if annotation is bool:
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ClipbenchError(f"--set {key}: expected true or false, got {value!r}")
    if annotation in (int, float, str):
        try:
            converted = annotation(value)
        except ValueError:
            raise ClipbenchError(f"--set {key}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is float and not math.isfinite(converted):
            raise ClipbenchError(f"--set {key}: expected a finite number, got {value!r}")
        return converted
    raise ClipbenchError(f"--set {key}: fields of type {annotation} cannot be set from the command line")


def apply_overrides(config: Any, overrides: dict[str, str], section: str, validate: bool = True) -> Any:
    """Return a copy of dataclass ``config`` with string ``overrides`` converted to field types
    (and validated, unless ``validate`` is false: the caller validates the final config)."""
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, raw in overrides.items():
        if key not in fields:
            valid = ", ".join(sorted(fields))
            raise ClipbenchError(f"--set {section}.{key}: unknown key; valid keys of {section}: {valid}")
        changes[key] = _convert(raw, hints[key], f"{section}.{key}")
    updated = dataclasses.replace(config, **changes)
    check = getattr(updated, "validate", None)
    if validate and check is not None:
        check()
    return updated


def parse_set_options(items: tuple[str, ...] | list[str]) -> dict[str, dict[str, str]]:
    """Split ``section.key=value`` strings into ``{section: {key: value}}``."""
    parsed: dict[str, dict[str, str]] = {}
    for item in items:
        if "=" not in item:
            raise ClipbenchError(f"--set {item!r}: expected section.key=value")
        path, value = item.split("=", 1)
        if "." not in path:
            raise ClipbenchError(f"--set {item!r}: expected section.key=value (e.g. victim.epochs=3)")
        section, key = path.split(".", 1)
        parsed.setdefault(section.strip(), {})[key.strip()] = value.strip()
    return parsed


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a dataclass config.

    Fields a config class lists in ``KEYED_WHEN_SET`` are left out while they hold their default:
    a setting added to a config keeps every artifact key and result written before it."""
    data = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    keyed_when_set = getattr(type(config), "KEYED_WHEN_SET", ())
    for field in dataclasses.fields(config):
        if field.name in keyed_when_set and getattr(config, field.name) == field.default:
            del data[field.name]
    return data


def stable_hash(*parts: Any, length: int = 16) -> str:
    """A short sha256 hex digest of JSON-serialisable parts (key order independent)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def require(condition: bool, message: str) -> None:
    """Raise a :class:`ClipbenchError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ClipbenchError(message)
