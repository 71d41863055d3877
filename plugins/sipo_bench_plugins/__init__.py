"""Built-in sipo-bench plugins: tasks, scorers, generation backends and the SIPO method.

Each submodule is registered through the `sipo_bench` entry-point group, exactly like a
third-party plugin package.
"""
