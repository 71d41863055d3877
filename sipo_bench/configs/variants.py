"""Method labels and the comparisons a run declares.

- A method label is a registered method name (`sipo`) or a named **variant**
  `name@field=value,field=value` (`sipo@refine=false`, `sipo@base=dpo-soups,rounds=2`): the
  method `name` with those options overriding its options (task defaults, then
  `method_options[name]`, then the variant's). The label is the method's name in the summary
  and in every table. Values are read as YAML scalars (`false`, `2`, `0.1`, `dpo-soups`).
- `compare_to` declares the paired comparisons: a label or a list of labels (every other
  method is compared with each), or a mapping `{method: baseline or [baselines]}` for chosen
  pairs (e.g. SIPO on MOD vs MOD and SIPO on soups vs soups).
"""

from __future__ import annotations

from typing import Any, Sequence

from .schema import ConfigError
from ..errors import did_you_mean

SEP = "@"


def _scalar(text: str, where: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    if isinstance(value, (dict, list)):
        raise ConfigError(f"`{where}`: expected a scalar option value (number, true/false, text), got {text!r}")
    return value


def parse_label(label: str, where: str = "methods") -> tuple[str, dict[str, Any]]:
    """`"sipo@refine=false,rounds=2"` -> `("sipo", {"refine": False, "rounds": 2})`; a plain
    name -> `(name, {})`. A malformed variant is a `ConfigError` naming `where`."""
    name, sep, rest = label.partition(SEP)
    if not sep:
        return label, {}
    expected = "a method name or a variant 'method@field=value[,field=value]'"
    if not name or not rest.strip():
        raise ConfigError(f"`{where}`: expected {expected}, got {label!r}")
    overrides: dict[str, Any] = {}
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"`{where}`: expected {expected}, got {label!r} (no 'field=value' in {part!r})")
        if key in overrides:
            raise ConfigError(f"`{where}`: expected each field once in {label!r}, got {key!r} twice")
        overrides[key] = _scalar(value.strip(), f"{where}.{key}")
    return name, overrides


def split_labels(text: str) -> list[str]:
    """Split a comma-separated CLI list of labels, keeping a variant's own commas:
    `"mod,sipo@base=dpo-soups,rounds=2"` -> `["mod", "sipo@base=dpo-soups,rounds=2"]` (a piece
    with '=' but no '@' continues the variant before it)."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if "=" in piece and SEP not in piece and out and SEP in out[-1]:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def check_compare_to(value: Any) -> None:
    """Shape check for `RunConfig.compare_to` (names are checked against the run's methods later)."""
    expected = "a method label, a list of labels, or a mapping {method: baseline or [baselines]}"
    if value is None or isinstance(value, str):
        if isinstance(value, str) and not value:
            raise ConfigError(f"`compare_to`: expected {expected}, got ''")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            if not isinstance(v, str) or not v:
                raise ConfigError(f"`compare_to[{i}]`: expected a method label, got {v!r}")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            vs = v if isinstance(v, list) else [v]
            if not isinstance(k, str) or not vs or not all(isinstance(x, str) and x for x in vs):
                raise ConfigError(f"`compare_to.{k}`: expected a baseline label or a list of them, got {v!r}")
        return
    raise ConfigError(f"`compare_to`: expected {expected}, got {value!r} ({type(value).__name__})")


def compare_pairs(value: Any, labels: Sequence[str]) -> list[tuple[str, str]]:
    """The (method, baseline) pairs `compare_to` declares, in a stable order; every label must
    be one of the run's methods (else a "Did you mean" `ConfigError`)."""
    check_compare_to(value)
    labels = list(labels)

    def known(x: str, where: str) -> str:
        if x not in labels:
            raise ConfigError(f"`{where}`: " + did_you_mean("method of this run", x, labels))
        return x

    if value is None:
        return []
    pairs: list[tuple[str, str]] = []
    if isinstance(value, (str, list)):
        for i, b in enumerate([value] if isinstance(value, str) else value):
            known(b, "compare_to" if isinstance(value, str) else f"compare_to[{i}]")
            pairs += [(m, b) for m in labels if m != b]
    else:
        for m, bs in value.items():
            known(m, f"compare_to.{m}")
            for b in bs if isinstance(bs, list) else [bs]:
                known(b, f"compare_to.{m}")
                if b == m:
                    raise ConfigError(f"`compare_to.{m}`: expected a baseline other than the method itself, got {b!r}")
                pairs.append((m, b))
    return list(dict.fromkeys(pairs))
