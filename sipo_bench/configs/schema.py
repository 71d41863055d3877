"""Typed, validated config dataclasses built from YAML/CLI dicts.

Every config is a dataclass whose fields carry `metadata={"help": ...}`. `build(cls, data,
where)` rejects unknown keys (with a "Did you mean" hint) and values of the wrong type, naming
the field in backticks with what was expected and what came; a `__post_init__` can add checks of
its own by raising `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from ..errors import UsageError, did_you_mean

T = TypeVar("T")


class ConfigError(UsageError):
    """A config value is wrong; the message names the field."""


def field(default: Any = dataclasses.MISSING, *, help: str, stages: tuple[str, ...] | None = None, **kw: Any) -> Any:
    """A dataclass field with help text (lists, dicts are copied per instance).

    `stages` (task options only): the stage kinds that read this option (e.g. `("data",)`),
    so only their cache keys hold it (`Task.stage_config(kind)`); None = every stage reads it."""
    metadata = {"help": help} if stages is None else {"help": help, "stages": tuple(stages)}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kw)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        value = default
        return dataclasses.field(default_factory=lambda: dataclasses.replace(value), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:  # `float | None` and the like: the one type's own message
            raise errors[0]
        raise ConfigError(f"`{where}`: expected {' or '.join(_type_name(a) for a in args)}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"`{where}`: expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"`{where}`: expected a list, got {value!r} ({type(value).__name__})")
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"`{where}`: expected a mapping, got {value!r} ({type(value).__name__})")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"`{where}`: expected a number, got {value!r} ({type(value).__name__})")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):  # `.inf` passes every `x > 0` check and `.nan` fails none
            raise ConfigError(f"`{where}`: expected a finite number, got {value!r}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"`{where}`: expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{where}`: expected true or false, got {value!r} ({type(value).__name__})")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"`{where}`: expected a string, got {value!r} ({type(value).__name__})")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return build(tp, value, where)
    return value


def build(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build config dataclass `cls` from a plain mapping, validating keys and types."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"`{where or cls.__name__}`: expected a mapping, got {data!r} ({type(data).__name__})")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            raise ConfigError(f"`{prefix}{key}`: " + did_you_mean("key", str(key), list(fields)))
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ConfigError(f"`{prefix}{name}`: expected a value (the field is required), got nothing")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if where and not str(e).startswith(f"`{where}"):
            raise ConfigError(f"`{where}`: {e}") from None
        raise


def to_dict(cfg: Any) -> dict:
    """A JSON-able dict of a config dataclass (tuples become lists)."""
    import json

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=list))


def help_rows(cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) of every field, for `sipo-bench ls` and docs."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows


def check(cond: bool, name: str, expected: str, got: Any) -> None:
    """Raise `ConfigError` naming `name` unless `cond`: for `__post_init__` checks."""
    if not cond:
        raise ConfigError(f"`{name}`: expected {expected}, got {got!r}")
