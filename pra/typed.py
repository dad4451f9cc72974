"""Typed settings from plain mappings: frozen dataclasses whose fields carry their documentation and
constraints, a validator that names the offending key, and the JSON schema of the same rules.

Generic: nothing here knows what the settings are for. A field is declared with `opt(default, help, ...)`;
its type hint (bool, int, float, str, dict, a dataclass, or list[...] of one of those) is its type.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import field
from typing import Any, Mapping

SCHEMA_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key."""


def opt(default, help: str, *, choices=None, minimum=None, maximum=None, exclusive_minimum=None,
        item_choices=None, item_minimum=None, unique: bool = False, length: int | None = None,
        allow_empty: bool = False, pattern: str | None = None, reconstruction: bool = False, paper: bool = False):
    """A field with its documentation and constraints. Lists: `item_choices` (allowed items), `item_minimum`,
    `unique` (no item twice), `length` (exact number of items), `allow_empty`. Strings: `pattern` (a regular
    expression the whole value matches). Floats are finite. reconstruction=True marks a value the source does
    not publish; paper=True a published one."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
            "exclusive_minimum": exclusive_minimum, "item_choices": item_choices, "item_minimum": item_minimum,
            "unique": unique, "length": length, "allow_empty": allow_empty, "pattern": pattern,
            "reconstruction": reconstruction, "paper": paper}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def plain(v):
    return dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v


def merge(base: Mapping, over: Mapping) -> dict:
    """`over` merged into `base` key by key (nested mappings merge, everything else replaces)."""
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _split(tp):
    """(container, element): (list, int) for list[int], (int, None) for int."""
    if typing.get_origin(tp) is list:
        return list, typing.get_args(tp)[0]
    return tp, None


def _type_ok(value, tp) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is list:
        return isinstance(value, list)
    if tp is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    return True


# YAML 1.2 floats that YAML 1.1 loaders (PyYAML, the one Snakemake reads config files with) read as text: digits,
# an optional fraction and a mandatory exponent, e.g. 1e-3
EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$")


def _exponent_float(value, tp):
    """`value` as a float where a float is expected and YAML 1.1 left an exponent float as text; else as is."""
    return float(value) if tp is float and isinstance(value, str) and EXPONENT_FLOAT.match(value) else value


def check_value(path: tuple, value, tp, meta: Mapping) -> Any:
    """`value` checked against the type hint `tp` and the constraints `meta`; returns the normalised value."""
    key = ".".join(path)
    tp, etype = _split(tp)
    value = _exponent_float(value, tp)
    if tp is list and isinstance(value, list):
        value = [_exponent_float(v, etype) for v in value]
    if not _type_ok(value, tp):
        raise ConfigError(f"config key '{key}': expected {tp.__name__}, got {type(value).__name__} ({value!r})")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}': {value!r} is not a finite number")
    if tp is str and meta.get("pattern") is not None and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(f"config key '{key}': {value!r} does not match {meta['pattern']} ({meta['help']})")
    if tp is dict:
        value = json.loads(json.dumps(value))  # a plain, detached copy
    if tp is list:
        if meta.get("length") is not None and len(value) != meta["length"]:
            raise ConfigError(f"config key '{key}': expected {meta['length']} items, got {len(value)}")
        if not value and not meta.get("allow_empty"):
            raise ConfigError(f"config key '{key}': must not be empty")
        if dataclasses.is_dataclass(etype):
            return [build(etype, item, path[:-1] + (f"{path[-1]}[{i}]",)) for i, item in enumerate(value)]
        allowed = meta.get("item_choices")
        for item in value:
            if not _type_ok(item, etype):
                raise ConfigError(f"config key '{key}': item {item!r} is not {etype.__name__}")
            if allowed is not None and item not in allowed:
                raise ConfigError(f"config key '{key}': {item!r} is not one of {allowed}")
            if etype is float and not math.isfinite(item):
                raise ConfigError(f"config key '{key}': item {item!r} is not a finite number")
            if meta.get("item_minimum") is not None and item < meta["item_minimum"]:
                raise ConfigError(f"config key '{key}': item {item!r} is below the minimum {meta['item_minimum']}")
        if meta.get("unique") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            raise ConfigError(f"config key '{key}': an item appears twice in {value!r}")
        value = [float(v) for v in value] if etype is float else list(value)
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"config key '{key}': {value!r} is not one of {meta['choices']}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(f"config key '{key}': {value!r} is below the minimum {meta['minimum']}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"config key '{key}': {value!r} is above the maximum {meta['maximum']}")
    if meta.get("exclusive_minimum") is not None and value <= meta["exclusive_minimum"]:
        raise ConfigError(f"config key '{key}': {value!r} must be greater than {meta['exclusive_minimum']}")
    return value


def build(cls, raw: Mapping, path: tuple = ()):
    """An instance of the dataclass `cls` from a raw mapping; unknown keys and bad values raise ConfigError."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{'.'.join(path) or '<root>'}': expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = ".".join(path + (unknown[0],))
        raise ConfigError(f"unknown config key '{where}' (allowed here: {sorted(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = build(tp, raw[f.name] if raw[f.name] is not None else {}, path + (f.name,))
        else:
            kwargs[f.name] = check_value(path + (f.name,), raw[f.name], tp, f.metadata)
    return cls(**kwargs)


def field_meta(cls, name: str) -> Mapping:
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata


def json_schema(cls) -> dict:
    """The JSON schema of the dataclass `cls`: the same types and constraints as `build`."""
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        tp, m = hints[f.name], f.metadata
        if dataclasses.is_dataclass(tp):
            props[f.name] = {**json_schema(tp), "description": m.get("help", "")}
            continue
        container, etype = _split(tp)
        s: dict = {"description": m["help"] + (" [reconstruction: not published by the paper]"
                                               if m.get("reconstruction") else ""),
                   "type": SCHEMA_TYPES[container]}
        if container is list:
            s["items"] = json_schema(etype) if dataclasses.is_dataclass(etype) else {"type": SCHEMA_TYPES[etype]}
            if m.get("item_choices"):
                s["items"]["enum"] = m["item_choices"]
            if m.get("item_minimum") is not None:
                s["items"]["minimum"] = m["item_minimum"]
            if m.get("unique"):
                s["uniqueItems"] = True
            s["minItems"] = m["length"] if m.get("length") is not None else (0 if m.get("allow_empty") else 1)
            if m.get("length") is not None:
                s["maxItems"] = m["length"]
        for k_src, k_dst in (("choices", "enum"), ("minimum", "minimum"), ("maximum", "maximum"),
                             ("exclusive_minimum", "exclusiveMinimum"), ("pattern", "pattern")):
            if m.get(k_src) is not None:
                s[k_dst] = m[k_src]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        s["default"] = json.loads(json.dumps(default, default=plain))
        props[f.name] = s
    return {"type": "object", "additionalProperties": False, "properties": props}


def marked(obj, flag: str = "reconstruction", path: tuple = ()) -> list[dict]:
    """Every field of a dataclass instance (recursively) whose metadata sets `flag`, with its value."""
    rows = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            rows += marked(v, flag, path + (f.name,))
        elif f.metadata.get(flag):
            rows.append({"key": ".".join(path + (f.name,)), "value": v, "help": f.metadata["help"]})
    return rows
