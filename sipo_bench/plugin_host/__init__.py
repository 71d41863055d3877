"""Hosting plugins: the plugin manager (`manager`: entry points and `--plugins-dir`), the typed
registries it fills (`registry`), and loose plugin files as a package (`localplugins`)."""
