"""The plugin contract: the hooks a plugin implements (`hookspecs`), the interfaces it implements
and receives (`interfaces`), and the conventions every plugin follows (`responses`, `weights`).
Plugins import these names from :mod:`sipo_bench.api`."""
