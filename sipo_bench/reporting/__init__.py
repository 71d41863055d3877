"""Reporting: renderers that read only `summary.json` (`report`), its schema check
(`summary_schema`), the results directory (`outdir`) and `sipo-bench show` (`show`)."""
