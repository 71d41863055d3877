"""Issue 14 item 6: a fault in one plugin stays local. Installed third-party packages are faked
with real `*.dist-info` directories on PYTHONPATH (entry points found by importlib.metadata)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAKES = {
    # name: (distribution, entry point value, module source)
    "broken": ("broken-pkg", "broken_mod", "import no_such_module_xyz\n"),
    "ghost": ("ghost-pkg", "ghost_mod", textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench.plugin_host.registry import Lazy
        @hookimpl
        def sipo_bench_register_methods():
            return [Lazy("ghost", "no_such_module_ghost:Ghost", "a method whose code is missing")]
    """)),
    "aaa-dup": ("aaa-dup", "dup_mod", textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench.contract.interfaces import Method
        class NotDPO(Method):
            name = "dpo"
            def fit(self, ctx):
                raise NotImplementedError
        @hookimpl
        def sipo_bench_register_methods():
            return [NotDPO]
    """)),
}


def install_fakes(root: Path, names: list[str]) -> Path:
    root.mkdir()
    for name in names:
        dist, module, source = FAKES[name]
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[sipo_bench]\n{name} = {module}\n")
        (root / f"{module}.py").write_text(source)
    return root


def cli(*args: str, fakes: Path | None = None, allow: str | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("SIPO_BENCH_PLUGINS", None)
    if fakes is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(fakes), env.get("PYTHONPATH", "")])
    if allow is not None:
        env["SIPO_BENCH_PLUGINS"] = allow
    return subprocess.run([sys.executable, "-m", "sipo_bench.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, **kw)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    return install_fakes(tmp_path_factory.mktemp("site") / "site", ["broken", "ghost", "aaa-dup"])


BROKEN = "plugin 'broken' (broken_mod): failed to load: ModuleNotFoundError: No module named 'no_such_module_xyz'"
DUP = "plugin 'aaa-dup': method name 'dpo' is already registered by the built-in plugin 'baselines'"
HATCH = "it is disabled. Set SIPO_BENCH_PLUGINS to the plugins you use to skip it (`sipo-bench plugins` lists them)"


def test_plugins_lists_broken_plugins_with_their_errors(fakes):
    p = cli("plugins", "--json", fakes=fakes)
    assert p.returncode == 1, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert rows["broken"]["error"] == BROKEN
    assert rows["aaa-dup"]["error"] == DUP  # the installed package is blamed, not the built-in
    assert rows["baselines"]["error"] is None and "dpo" in rows["baselines"]["registers"]["methods"]
    assert rows["ghost"]["error"] is None  # its lazy entry is only imported when used
    table = cli("plugins", fakes=fakes)
    assert table.returncode == 1 and f"BROKEN: {BROKEN}" in table.stdout and "Traceback" not in table.stderr


def test_ls_and_validate_name_the_broken_plugin_and_go_on(fakes, tmp_path):
    p = cli("ls", "methods", fakes=fakes)
    assert p.returncode == 0, p.stderr
    assert {l.split()[0] for l in p.stdout.splitlines()} >= {"dpo", "dummy", "ghost", "sipo"}
    warnings = p.stderr.splitlines()
    assert f"sipo-bench: warning: {BROKEN}; {HATCH}" in warnings
    assert f"sipo-bench: warning: {DUP}; {HATCH}" in warnings
    assert len(warnings) == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: dummy\nmethods: [dummy]\n")
    v = cli("validate", "--config", str(cfg), fakes=fakes)
    assert v.returncode == 0 and v.stdout.startswith("ok: task dummy") and BROKEN in v.stderr


def test_an_unimportable_method_fails_alone_under_methods_all(fakes, tmp_path):
    out = tmp_path / "out"
    p = cli("run", "--task", "dummy", "--methods", "all", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--quiet", fakes=fakes)
    assert p.returncode == 1, p.stderr
    s = json.loads((out / "summary.json").read_text())
    assert list(s["methods"]) == ["dummy", "ghost"]
    assert s["methods"]["dummy"]["status"] == "ok" and s["methods"]["dummy"]["hypervolume"] is not None
    ghost = s["methods"]["ghost"]
    assert ghost["status"] == "failed"
    assert ghost["error"] == ("cannot load the method: plugin entry 'ghost': cannot import 'no_such_module_ghost:Ghost': "
                              "No module named 'no_such_module_ghost'")
    assert f"sipo-bench: method 'ghost' failed: {ghost['error']}" in p.stderr
    assert "Traceback" not in p.stderr


def test_allow_list_errors(fakes, tmp_path):
    p = cli("ls", "tasks", fakes=fakes, allow="dummy,nope,nada")
    assert p.returncode == 2
    assert p.stderr.startswith("sipo-bench: error: `SIPO_BENCH_PLUGINS`: unknown plugin(s) 'nada', 'nope'. Available: ")
    assert "baselines" in p.stderr and "broken" in p.stderr
    p = cli("run", "--task", "synthetic-hh", "--out", str(tmp_path / "o"), fakes=fakes, allow="dummy,local-executor")
    assert p.returncode == 2
    assert ("unknown task 'synthetic-hh'. Available: dummy (SIPO_BENCH_PLUGINS=dummy,local-executor restricts "
            "loading to those plugins)") in p.stderr
    # the allow-list is the escape hatch: the broken plugins are not loaded, nothing is said about them
    ok = cli("ls", "tasks", fakes=fakes, allow="dummy,local-executor")
    assert ok.returncode == 0 and ok.stderr == "" and ok.stdout.split()[0] == "dummy"
    # a broken plugin asked for by name is an error
    named = cli("ls", "tasks", fakes=fakes, allow="dummy,broken")
    assert named.returncode == 2 and named.stderr.strip() == f"sipo-bench: error: {BROKEN}"


def test_unknown_name_mentions_broken_plugins(fakes, tmp_path):
    p = cli("run", "--task", "dummy", "--methods", "brokn", "--out", str(tmp_path / "o"), fakes=fakes)
    assert p.returncode == 2
    assert ("(plugin(s) 'aaa-dup', 'broken' failed to load (`sipo-bench plugins` shows why))" in
            p.stderr.splitlines()[-1])


@pytest.mark.parametrize("args", [["ls", "methods"], ["plugins"], ["plugins", "--json"]])
def test_closed_stdout_is_not_an_error(args):
    """`sipo-bench ls methods | head -1`: the reader is gone before we write."""
    env = {**os.environ}
    env.pop("SIPO_BENCH_PLUGINS", None)
    proc = subprocess.Popen([sys.executable, "-m", "sipo_bench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert err == ""
    shell = subprocess.run(f"set -o pipefail; {sys.executable} -m sipo_bench.cli {' '.join(args)} | head -c 1 >/dev/null",
                           shell=True, executable="/bin/bash", capture_output=True, text=True, env=env, timeout=120)
    assert shell.returncode == 0 and shell.stderr == ""
