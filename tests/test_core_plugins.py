"""Registries, hook loading, allow-list, plugins-dir, lazy entries."""

from __future__ import annotations

import sys
import textwrap

import pytest

from sipo_bench.errors import PluginError, UsageError
from sipo_bench.contract.hookspecs import hookimpl
from sipo_bench.contract.interfaces import Method, Objective, Scorer, Task
from sipo_bench.plugin_host.manager import Registries, get_plugin_manager, load
from sipo_bench.plugin_host.registry import Lazy, Registry


class _M(Method):
    name = "m1"

    def fit(self, ctx):
        raise NotImplementedError


def test_registry_rejects_duplicates_and_wrong_base():
    reg = Registry("method", Method)
    reg.add(_M, "p1")
    with pytest.raises(PluginError, match=r"plugin 'p2': method name 'm1' is already registered by plugin 'p1'"):
        reg.add(_M, "p2")
    with pytest.raises(PluginError, match="is not a subclass of sipo_bench.contract.interfaces.Method"):
        reg.add(int, "p3")
    with pytest.raises(UsageError, match=r"unknown method 'm'\. Did you mean 'm1'\? Available: m1"):
        reg.get("m")


def test_registry_instances_for_objectives():
    reg = Registry("objective", Objective, instances=True)
    reg.add(Objective("x"), "p")
    with pytest.raises(PluginError, match="not an instance"):
        reg.add(Objective, "p")
    assert reg.get("x").higher_is_better


def test_lazy_entry_is_imported_only_on_use():
    reg = Registry("method", Method)
    reg.add(Lazy("late", "sipo_bench_lazy_probe:LateMethod", "probe"), "p")
    assert "sipo_bench_lazy_probe" not in sys.modules
    assert reg.names() == ["late"]
    with pytest.raises(PluginError, match="cannot import 'sipo_bench_lazy_probe:LateMethod'"):
        reg.get("late")


def test_lazy_entry_wrong_base_fails_on_load():
    reg = Registry("scorer", Scorer)
    reg.add(Lazy("bad", "sipo_bench.contract.interfaces:Objective"), "p")
    with pytest.raises(PluginError, match="is not a subclass of sipo_bench.contract.interfaces.Scorer"):
        reg.get("bad")


def test_builtins_load_through_entry_points():
    regs = load()
    assert "dummy" in regs.tasks and "dummy" in regs.methods and "local" in regs.executors
    info = {p.name: p for p in regs.plugin_list()}
    assert info["dummy"].source == "entry point"
    assert info["dummy"].registers["methods"] == ["dummy"]


def test_listing_plugins_does_not_import_torch():
    import subprocess

    code = "import sys; from sipo_bench.plugin_host.manager import load; load(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_extra_plugin_registered_and_unregistered():
    class Plug:
        @hookimpl
        def sipo_bench_register_methods(self):
            return [_M]

    plug = Plug()
    pm = get_plugin_manager(extra=[plug])
    try:
        regs = Registries(pm)
        assert regs.methods.get("m1") is _M
    finally:
        pm.unregister(plug)
    assert "m1" not in Registries(pm).methods


def test_misspelled_hook_fails_loudly(tmp_path):
    (tmp_path / "typo.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        @hookimpl
        def sipo_bench_register_method():
            return []
    """))
    with pytest.raises(PluginError, match="typo"):  # a --plugins-dir file was asked for: it must load
        load(tmp_path)
    regs = load(tmp_path, strict=False)  # `sipo-bench plugins`: listed as broken, the others load
    assert "typo" in regs.broken and "sipo_bench_register_method" in regs.broken["typo"].error
    assert "dummy" in regs.tasks


def test_plugins_dir_and_allow_list(tmp_path, monkeypatch):
    (tmp_path / "extra_obj.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench.contract.interfaces import Objective
        @hookimpl
        def sipo_bench_register_objectives():
            return [Objective("fun", True, "how fun")]
    """))
    regs = load(tmp_path)
    assert "fun" in regs.objectives
    assert {p.name: p.source for p in regs.plugin_list()}["extra_obj"] == "plugins-dir"
    monkeypatch.setenv("SIPO_BENCH_PLUGINS", "dummy,local-executor")
    regs = load(tmp_path)
    assert "fun" not in regs.objectives and "dummy" in regs.tasks
    assert sorted(p.name for p in regs.plugin_list()) == ["dummy", "local-executor"]


def test_two_plugins_same_name(tmp_path):
    (tmp_path / "clash.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench_plugins.dummy import DummyMethod
        class Again(DummyMethod):
            pass
        @hookimpl
        def sipo_bench_register_methods():
            return [Again]
    """))
    with pytest.raises(PluginError, match=r"plugin 'clash': method name 'dummy' is already registered by the built-in plugin 'dummy'"):
        load(tmp_path)


def test_hook_must_return_list(tmp_path):
    (tmp_path / "notlist.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        @hookimpl
        def sipo_bench_register_tasks():
            return "dummy"
    """))
    with pytest.raises(PluginError, match="must return a list"):
        load(tmp_path)


def test_every_hook_is_documented():
    from sipo_bench.contract import hookspecs

    hooks = [n for n in dir(hookspecs) if n.startswith("sipo_bench_")]
    assert len(hooks) == 6
    for n in hooks:
        doc = getattr(hookspecs, n).__doc__ or ""
        assert len(doc.split()) > 10, n
