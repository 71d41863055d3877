"""sipo-bench: a benchmark harness for multi-objective alignment of language models.

Plugin authors import from :mod:`sipo_bench.api`; the 0.1 module paths (`sipo_bench.config`,
`sipo_bench.stages`, ...) still import, with a DeprecationWarning (:mod:`sipo_bench.compat`).
"""

__version__ = "0.1.0"

from . import compat as _compat  # noqa: E402  (after __version__: nothing else is imported)

_compat.install()
