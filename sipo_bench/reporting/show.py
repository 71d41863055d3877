"""`sipo-bench show KIND NAME`: what one registered plugin entry is and every option it takes.

The options come from the entry's config dataclass: `config_class` of methods, tasks and
executors, `options_class` of scorers (when they declare one). Each field gives its name,
type, default and `help` metadata (`sipo_bench.configs.schema.field`). With a task, a method's defaults
are the ones that task sets (`Task.method_defaults`), i.e. what a run on that task uses.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from ..errors import UsageError, did_you_mean

#: `show` kind (singular, as typed) -> registry attribute
KINDS = {"method": "methods", "task": "tasks", "scorer": "scorers", "executor": "executors",
         "generator": "generators", "objective": "objectives"}


def type_label(tp: Any) -> str:
    """A short, readable type: `int | None`, `'a' | 'b'`, `list[str]`, `dict`."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_label(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_label(a) for a in args)}]" if args else name
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    return _value_text(value)


def _value_text(value: Any) -> str:
    """YAML-like text of a value (null, true, "text", [1, 2]), as a config file writes it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return repr(value)


def options(cls: type | None, defaults: dict | None = None) -> list[dict] | None:
    """[{name, type, default, help}] of config dataclass `cls` (None when `cls` is None);
    `defaults` replaces the dataclass's own defaults (a task's method defaults)."""
    if cls is None:
        return None
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        own = _default_text(f)
        row = {"name": f.name, "type": type_label(hints.get(f.name, f.type)), "default": own,
               "help": f.metadata.get("help", "")}
        if defaults and f.name in defaults and _value_text(defaults[f.name]) != own:
            row.update(default=_value_text(defaults[f.name]), class_default=own)
        out.append(row)
    return out


def describe(registries: Any, kind: str, name: str, task: str | None = None) -> dict:
    """Everything `show` prints, as a JSON-able dict. Unknown kind or name: UsageError."""
    if kind not in KINDS:
        raise UsageError("`kind`: " + did_you_mean("kind", kind, list(KINDS)))
    if task is not None and kind != "method":
        raise UsageError(f"`--task`: expected only with `show method` (a method's defaults on that task), got it with `show {kind}`")
    reg = getattr(registries, KINDS[kind])
    if name not in reg:
        raise UsageError(did_you_mean(kind, name, reg.names()))
    entry = reg.entry(name)
    value = entry.value
    info: dict[str, Any] = {"kind": kind, "name": name, "plugin": entry.plugin,
                            "description": entry.description or getattr(value, "description", "") or ""}
    if kind == "objective":
        info.update({"higher_is_better": value.higher_is_better, "description": value.description or info["description"]})
        return info
    info["class"] = f"{value.__module__}:{value.__qualname__}"
    if kind == "method":
        defaults = None
        if task is not None:
            from ..execution.runtime import Runtime

            t = Runtime(registries, quiet=True).task(task)
            defaults = t.method_defaults(name)
            info["defaults_from_task"] = task
        info.update({"tasks": list(value.tasks) if value.tasks is not None else None, "needs_model": value.needs_model,
                     "options_field": f"method_options.{name}", "options": options(value.config_class, defaults)})
    elif kind == "task":
        t = value()
        info.update({"objectives": [{"name": o.name, "higher_is_better": o.higher_is_better, "description": o.description}
                                    for o in t.objectives()],
                     "scorers": [[n, o] for n, o in t.scorers()], "default_generator": t.default_generator,
                     "model_based": value.model_based, "oracle": value.oracle, "version": value.version,
                     "options_field": "task_options", "options": options(value.config_class)})
    elif kind == "scorer":
        info.update({"options_field": "options of the task's scorer entry or of an `extra_scorers` entry",
                     "options": options(getattr(value, "options_class", None))})
    elif kind == "executor":
        info.update({"options_field": "executor_options", "options": options(value.config_class)})
    return info


def render(info: dict) -> str:
    """The plain-text page of :func:`describe`'s dict (stable, greppable, no terminal width)."""
    kind, name = info["kind"], info["name"]
    lines = [f"{kind} {name}  (plugin {info['plugin']}" + (f", {info['class']}" if "class" in info else "") + ")"]
    if info.get("description"):
        lines.append(f"  {info['description']}")
    if kind == "objective":
        lines.append(f"  direction: {'higher' if info['higher_is_better'] else 'lower'} is better")
        return "\n".join(lines) + "\n"
    if kind == "method":
        tasks = ", ".join(info["tasks"]) if info["tasks"] is not None else "any"
        lines.append(f"  runs on: {tasks}; needs a language model: {'yes' if info['needs_model'] else 'no'}")
    if kind == "task":
        objs = ", ".join(f"{o['name']} ({'higher' if o['higher_is_better'] else 'lower'} is better)" for o in info["objectives"])
        lines.append(f"  objectives: {objs}")
        lines.append("  scorers: " + ", ".join(f"{n} {json.dumps(o)}" if o else n for n, o in info["scorers"]))
        lines.append(f"  default generator: {info['default_generator']}; model-based: {'yes' if info['model_based'] else 'no'}; "
                     f"oracle scorers: {'yes' if info['oracle'] else 'no'}; version: {info['version']}")
    opts = info.get("options")
    where = info.get("options_field")
    if opts is None:
        if kind == "scorer":
            lines += ["", "options: not declared (the scorer takes its options as keyword arguments; "
                          "declare `options_class` to list and check them)"]
        elif kind == "executor":
            lines += ["", "options: not declared"]
        return "\n".join(lines) + "\n"
    if not opts:
        lines += ["", f"options ({where}): none"]
        return "\n".join(lines) + "\n"
    note = f"; defaults of task {info['defaults_from_task']}" if info.get("defaults_from_task") else ""
    lines += ["", f"options ({where}{note}):"]
    for o in opts:
        own = f"  (the method's own default: {o['class_default']})" if "class_default" in o else ""
        lines.append(f"  {o['name']}: {o['type']} = {o['default']}{own}")
        if o["help"]:
            lines.append(f"      {o['help']}")
    return "\n".join(lines) + "\n"
