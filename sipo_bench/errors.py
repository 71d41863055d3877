"""Error types: a usage error exits 2, a run failure exits 1 (see `sipo_bench.cli`)."""

from __future__ import annotations


class SipoBenchError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class UsageError(SipoBenchError):
    """Bad input from the user: unknown name, wrong type, bad weights, unwritable path.

    The message is one line that names the field (or plugin), what was expected and what came.
    """

    exit_code = 2


class PluginError(UsageError):
    """A plugin is broken: duplicate name, wrong base class, unknown hook."""


class StageFailed(SipoBenchError):
    """One or more stages of a run raised; their tracebacks are in the stage log."""


def did_you_mean(kind: str, name: str, available: list[str]) -> str:
    """`unknown method 'modp'. Did you mean 'modpo'? Available: ...` (lm-eval style)."""
    import difflib

    msg = f"unknown {kind} {name!r}."
    close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
    if close:
        msg += f" Did you mean {close[0]!r}?"
    return msg + f" Available: {', '.join(sorted(available)) or '(none)'}"
