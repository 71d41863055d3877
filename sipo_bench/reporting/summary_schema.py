"""The types of the `summary.json` fields that reports read, checked when a summary is loaded.

`sipo-bench report` renders and merges summaries written by other runs (or edited by hand); a
field of the wrong type must be a one-line error naming it, not a traceback deep inside a
renderer. Objects are open (unknown keys pass, so newer fields do not break older readers);
listed keys are checked when present.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA_VERSION = 3  # 2: intervals name their method and level (`interval`), `comparisons`, evaluation noise;
#                     3: t-intervals up to 20 seeds (paired t for comparisons), Holm-adjusted p, IGD+ per seed


class _Spec:
    what = "?"

    def check(self, v: Any, path: str) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError


def _got(v: Any) -> str:
    text = repr(v)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(v).__name__})"


class _Scalar(_Spec):
    def __init__(self, what: str, ok):
        self.what, self.ok = what, ok

    def check(self, v, path):
        return None if self.ok(v) else f"`{path}`: expected {self.what}, got {_got(v)}"


NUM = _Scalar("a finite number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
ANYNUM = _Scalar("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))  # scores may be NaN
INT = _Scalar("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
STR = _Scalar("a string", lambda v: isinstance(v, str))
BOOL = _Scalar("true or false", lambda v: isinstance(v, bool))
ANY = _Scalar("anything", lambda v: True)


class Opt(_Spec):
    def __init__(self, inner: _Spec):
        self.inner, self.what = inner, f"{inner.what} or null"

    def check(self, v, path):
        if v is None:
            return None
        err = self.inner.check(v, path)
        return err if err is None or not err.startswith(f"`{path}`: expected {self.inner.what},") else \
            f"`{path}`: expected {self.what}, got {_got(v)}"


class ListOf(_Spec):
    def __init__(self, item: _Spec, what: str = "a list"):
        self.item, self.what = item, what

    def check(self, v, path):
        if not isinstance(v, list):
            return f"`{path}`: expected {self.what}, got {_got(v)}"
        for i, x in enumerate(v):
            err = self.item.check(x, f"{path}[{i}]")
            if err:
                return err
        return None


class DictOf(_Spec):
    def __init__(self, value: _Spec):
        self.value, self.what = value, "an object"

    def check(self, v, path):
        if not isinstance(v, dict):
            return f"`{path}`: expected {self.what}, got {_got(v)}"
        for k, x in v.items():
            err = self.value.check(x, f"{path}.{k}")
            if err:
                return err
        return None


class Obj(_Spec):
    def __init__(self, fields: dict[str, _Spec], required: tuple[str, ...] = ()):
        self.fields, self.required, self.what = fields, required, "an object"

    def check(self, v, path):
        if not isinstance(v, dict):
            return f"`{path}`: expected {self.what}, got {_got(v)}"
        for k in self.required:
            if k not in v:
                return f"`{path}.{k}`: expected a value, got nothing (missing)"
        for k, spec in self.fields.items():
            if k in v:
                err = spec.check(v[k], f"{path}.{k}" if path else k)
                if err:
                    return err
        return None


VEC = ListOf(ANYNUM, "a list of numbers")
FVEC = ListOf(NUM, "a list of finite numbers")
INTERVAL = Opt(Obj({"method": STR, "level": NUM, "lo": NUM, "hi": NUM}, required=("method", "level", "lo", "hi")))
HV = Opt(Obj({"mean": NUM, "per_seed": DictOf(NUM), "interval": INTERVAL, "std": Opt(NUM),
              "eval_se": Opt(DictOf(Opt(NUM))), "noise": Opt(DictOf(ANY))}, required=("mean",)))
COMPARISON = Opt(Obj({"n": INT, "mean": NUM, "interval": INTERVAL, "wins": INT, "ties": INT}, required=("n", "mean")))
POINT = Obj({"w": FVEC, "seed": INT, "scores": VEC, "se": Opt(ListOf(Opt(ANYNUM), "a list of numbers")),
             "n_prompts": Opt(INT)}, required=("w", "seed", "scores"))
MEAN_POINT = Obj({"w": FVEC, "scores": VEC, "n_seeds": INT}, required=("w", "scores"))
METHOD = Obj({
    "status": STR, "error": Opt(STR), "config": Opt(DictOf(ANY)), "points": ListOf(POINT), "mean_points": ListOf(MEAN_POINT),
    "front": ListOf(MEAN_POINT), "hypervolume": HV, "hypervolume_floor": HV, "igd_plus": Opt(NUM), "igd_plus_per_seed": HV,
    "best": DictOf(ANYNUM), "stage_seconds": DictOf(NUM), "seconds": Opt(NUM), "extra": Opt(DictOf(ANY)),
    "trained_on": Opt(STR), "variant": Opt(STR), "comparisons": Opt(DictOf(DictOf(COMPARISON))),
    "compute": Opt(DictOf(Opt(NUM))),
}, required=("status",))
SUMMARY = Obj({
    "schema_version": INT, "task": STR, "task_description": Opt(STR),
    "objectives": ListOf(Obj({"name": STR, "higher_is_better": BOOL, "description": Opt(STR)},
                             required=("name", "higher_is_better")), "a list of objectives"),
    "weights": ListOf(FVEC), "seeds": ListOf(INT, "a list of integers"), "ref_point": Opt(FVEC),
    "ref_point_source": Opt(STR), "ref_points": DictOf(Opt(FVEC)), "floor": Opt(FVEC), "floor_source": Opt(STR),
    "union_front": ListOf(VEC), "compare_to": ListOf(ListOf(STR)), "base_policy": Obj({"scores": DictOf(Opt(VEC))}), "methods": DictOf(METHOD),
    "failed_stages": ListOf(Obj({"stage": STR, "error": Opt(STR)})), "merged_from": ListOf(DictOf(ANY)),
    "provenance": Opt(DictOf(ANY)), "tuning": Opt(DictOf(ANY)),
    "run": Obj({"run_id": Opt(STR), "date": Opt(STR), "wall_seconds": Opt(NUM), "stages": DictOf(ANY)}),
}, required=("schema_version", "task", "objectives", "methods"))


def check_summary(data: Any) -> str | None:
    """None if `data` has the shape reports read, else one line naming the first bad field."""
    err = SUMMARY.check(data, "")
    if err:
        return err.replace("`.", "`")
    k = len(data["objectives"])
    if not data["objectives"]:
        return "`objectives`: expected at least one objective, got []"
    for name, m in data["methods"].items():
        for kind in ("points", "mean_points", "front"):
            for i, p in enumerate(m.get(kind) or []):
                for f in ("w", "scores"):
                    if len(p[f]) != k:
                        return f"`methods.{name}.{kind}[{i}].{f}`: expected {k} values (one per objective), got {p[f]!r}"
    for f in ("ref_point", "floor"):
        if data.get(f) is not None and len(data[f]) != k:
            return f"`{f}`: expected {k} values (one per objective), got {data[f]!r}"
    return None
