"""sipo-bench: a benchmark harness for multi-objective alignment of language models."""

__version__ = "0.1.0"
