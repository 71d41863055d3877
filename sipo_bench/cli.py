"""The `sipo-bench` command line. Usage errors exit 2 with one line; failed stages exit 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import SipoBenchError, UsageError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _labels(value: str) -> list[str]:
    from .configs.variants import split_labels

    return split_labels(value)


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"sipo-bench: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sipo-bench", description="Benchmark multi-objective alignment methods.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="Train every method, sweep weights, score, report.")
    r.add_argument("--task", help="Task name (default: synthetic-hh, the embedded default task).")
    r.add_argument("--methods", type=_labels, help="Comma-separated method labels (names or variants "
                   "name@field=value,field=value), or 'all'.")
    r.add_argument("--compare-to", type=_labels, metavar="B[,B]", help="Baselines for paired comparisons "
                   "(every other method vs each), e.g. mod,dpo-soups.")
    r.add_argument("--seeds", type=_seeds, help="Comma-separated seeds, e.g. 0,1,2.")
    r.add_argument("--weights", type=int, metavar="P", help="Simplex partitions of the weight grid (k=2: P+1 points).")
    r.add_argument("--config", help="YAML file with RunConfig fields; flags override it.")
    r.add_argument("--out", help="Output directory (default results/<task>-<timestamp>).")
    r.add_argument("--executor", help="Executor (default local).")
    r.add_argument("--jobs", type=int, metavar="N", help="Stages run side by side in N worker processes "
                                                           "(default: cores available / cpu_threads; 1 = in this process).")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], help="Where models run (default auto: cuda when a GPU is visible).")
    r.add_argument("--ray-address", help="Ray cluster address for --executor ray (auto or HOST:PORT).")
    r.add_argument("--plugins-dir", help="Directory of extra plugin *.py files.")
    r.add_argument("--cache-dir", help="Stage cache (default $SIPO_BENCH_CACHE or ~/.cache/sipo-bench).")
    r.add_argument("--no-cache", action="store_true", default=None, help="Recompute every stage.")
    r.add_argument("--overwrite", action="store_true", default=None,
                   help="Replace the results in --out when they belong to a run of another config.")
    r.add_argument("--max-test-prompts", type=int, help="Evaluate on at most N test prompts.")
    r.add_argument("--max-examples", type=int, help="Cap training pairs (task option max_examples).")
    r.add_argument("--extra-scorers", type=_csv, metavar="S[,S]", help="Scorers whose objectives are also reported on "
                   "every point (`extra_scorers` with default options; the HV stays over the task's objectives).")
    r.add_argument("--quiet", action="store_true", default=None, help="Log lines only, no progress bars.")
    r.add_argument("--deterministic", action="store_true", default=None,
                   help="Pinned kernels (baseline x86-64 ATen/MKL code paths, one thread, deterministic algorithms): "
                        "the same bits under other kernel choices on one machine (not across CPU vendors, measured), slower; "
                        "cached apart from default-mode results.")
    r.add_argument("--tracking", metavar="NAME", help="Send curves and HV to an experiment tracker: tensorboard, wandb, "
                                                      "mlflow or none (docs/reporting.md).")
    r.add_argument("--samples-per-point", type=int, metavar="N", help="Sample responses kept per evaluated point "
                                                                      "(samples.json, index.html); 0 = none.")

    pl = sub.add_parser("plugins", help="List plugins, versions and what they register.")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--plugins-dir")

    ls = sub.add_parser("ls", help="List tasks, methods, scorers, objectives, generators or executors.")
    ls.add_argument("kind", choices=["tasks", "methods", "scorers", "objectives", "generators", "executors"])
    ls.add_argument("--plugins-dir")

    sh = sub.add_parser("show", help="One method, task, scorer, executor, generator or objective: description, "
                                     "plugin and every option with its type, default and help.")
    sh.add_argument("kind", choices=["method", "task", "scorer", "executor", "generator", "objective"])
    sh.add_argument("name")
    sh.add_argument("--task", help="With `show method`: the defaults that task sets for the method.")
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--plugins-dir")

    v = sub.add_parser("validate", help="Check a config (names, types, weights) without running.")
    v.add_argument("--config", required=True)
    v.add_argument("--plugins-dir")

    rep = sub.add_parser("report", help="Re-render reports from summary.json; several dirs are merged.")
    rep.add_argument("dirs", nargs="+")
    rep.add_argument("--out", help="Where to write a merged report (default: the single DIR).")
    rep.add_argument("--html", action="store_true", help="Also write index.html, the self-contained results page "
                                                        "(a run and a merged report always write it).")

    ca = sub.add_parser("cache", help="Check or clean the stage cache.")
    csub = ca.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    cv = csub.add_parser("verify", help="Hash every file of every cached stage against its record.")
    cv.add_argument("--cache-dir", help="Stage cache (default $SIPO_BENCH_CACHE or ~/.cache/sipo-bench).")
    cv.add_argument("--remove", action="store_true", help="Delete the damaged stages (the next run recomputes them).")
    cg = csub.add_parser("gc", help="Remove stages no run references and temp dirs of dead processes.")
    cg.add_argument("--cache-dir", help="Stage cache (default $SIPO_BENCH_CACHE or ~/.cache/sipo-bench).")
    cg.add_argument("--dry-run", action="store_true", help="Print what would be removed; remove nothing.")

    c = sub.add_parser("conflicts", help="Conflict fraction and label agreement of a task's training pairs.")
    c.add_argument("--task", default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--config", help="YAML with task / task_options.")
    c.add_argument("--cache-dir")
    c.add_argument("--plugins-dir")
    return p


def _version() -> str:
    from . import __version__

    return f"sipo-bench {__version__}"


def _run_config(args: argparse.Namespace) -> Any:
    from .configs.run_config import load_yaml, make_config

    data = load_yaml(args.config) if getattr(args, "config", None) else {}
    overrides = {
        "task": args.task, "methods": args.methods, "seeds": args.seeds, "weights": args.weights,
        "out": args.out, "executor": args.executor, "plugins_dir": args.plugins_dir,
        "cache_dir": args.cache_dir, "no_cache": args.no_cache, "quiet": args.quiet,
        "deterministic": args.deterministic,
        "max_test_prompts": args.max_test_prompts, "overwrite": args.overwrite, "jobs": args.jobs,
        "device": args.device, "compare_to": args.compare_to, "tracking": args.tracking,
        "samples_per_point": args.samples_per_point,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.extra_scorers is not None:
        data["extra_scorers"] = [{"name": n} for n in args.extra_scorers]
    if args.max_examples is not None:
        data["task_options"] = {**_mapping(data, "task_options"), "max_examples": args.max_examples}
    if args.ray_address is not None:
        if data.get("executor", "local") != "ray":
            raise UsageError(f"`--ray-address`: only with `--executor ray`, got executor {data.get('executor', 'local')!r}")
        data["executor_options"] = {**_mapping(data, "executor_options"), "address": args.ray_address}
    return make_config(data)


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"`{key}`: expected a mapping, got {value!r} ({type(value).__name__})")
    return value


def _warn_plugins(regs: Any) -> None:
    """One line per broken plugin nobody asked for (it is left out; the command goes on)."""
    for line in regs.warnings():
        print(f"sipo-bench: warning: {line}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from .planning.run import execute
    from .reporting.report import console_table
    from .execution.runtime import Runtime

    cfg = _run_config(args)
    runtime = Runtime(plugins_dir=cfg.plugins_dir, quiet=cfg.quiet)
    _warn_plugins(runtime.registries)
    summary, out = execute(cfg, runtime)
    if summary.get("kind") == "sweep":
        return _show_sweep(out, cfg.quiet)
    failed = {n: m["error"] for n, m in summary["methods"].items() if m["status"] != "ok"}
    failed_stages = summary.get("failed_stages") or []
    rc = 1 if failed or failed_stages else 0
    with _stdout_may_close():
        if cfg.quiet:
            from .reporting.report import table_md

            print(table_md(summary))
        else:
            _console().print(console_table(summary))
    print(f"results: {out}/summary.json", file=sys.stderr)
    for n, e in failed.items():
        print(f"sipo-bench: method {n!r} failed: {e} (tracebacks in {out}/logs/failures/)", file=sys.stderr)
    in_methods = {e for e in failed.values() if e}
    for st in failed_stages:
        if not any(st["stage"] in e for e in in_methods):
            print(f"sipo-bench: stage {st['stage']} failed: {st['error']} (traceback in {out}/logs/failures/{st['key']}.txt)",
                  file=sys.stderr)
    return rc


def _show_sweep(out: Path, quiet: bool) -> int:
    """Print a sweep's multi-run tables; exit 1 when a method failed at any point."""
    from .reporting.sweep_report import failures, load_sweep, sweep_console, sweep_md

    index, summaries = load_sweep(out)
    if quiet:
        print(sweep_md(index, summaries))
    else:
        from rich.console import Console

        Console().print(sweep_console(index, summaries))
    print(f"results: {out}/sweep.json (one run per point: {out}/<point>/summary.json)", file=sys.stderr)
    failed = failures(index, summaries)
    for label, n, e in failed:
        print(f"sipo-bench: sweep point {label}: method {n!r} failed: {e} (tracebacks in {out}/logs/failures/)",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugin_host.manager import load

    regs = load(args.plugins_dir, strict=False)  # list broken plugins with their errors, never fail on them
    infos = regs.plugin_list()
    broken = [regs.broken[k] for k in sorted(regs.broken)]
    if args.json:
        print(json.dumps([{"name": i.name, "version": i.version, "api": i.api, "source": i.source,
                           "registers": i.registers, "error": None} for i in infos]
                         + [{"name": b.name, "version": None, "api": None, "source": b.source, "registers": {},
                             "error": b.error}
                            for b in broken], indent=2))
        return 1 if broken else 0
    from rich.table import Table
    from rich.text import Text

    t = Table(title="sipo-bench plugins")
    for c in ("plugin", "version", "api", "source", "registers"):
        t.add_column(c)
    for i in infos:
        t.add_row(i.name, i.version, i.api, i.source, "; ".join(f"{k}: {', '.join(v)}" for k, v in i.registers.items()))
    for b in broken:
        t.add_row(Text(b.name, style="red"), "-", "-", b.source, Text(f"BROKEN: {b.error}", style="red"))
    _console().print(t)
    return 1 if broken else 0


def cmd_ls(args: argparse.Namespace) -> int:
    from .plugin_host.manager import load

    regs = load(args.plugins_dir)
    _warn_plugins(regs)
    reg = getattr(regs, args.kind)
    for e in reg.entries():
        desc = e.description or (getattr(e.value, "description", "") if not hasattr(e.value, "target") else "")
        print(f"{e.name:24s} {e.plugin:16s} {desc}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .plugin_host.manager import load
    from .reporting.show import describe, render

    regs = load(args.plugins_dir)
    _warn_plugins(regs)
    info = describe(regs, args.kind, args.name, args.task)
    print(json.dumps(info, indent=2) if args.json else render(info), end="\n" if args.json else "")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .configs.run_config import load_yaml, make_config
    from .planning.experiment import plan_run, plan_sweep
    from .execution.runtime import Runtime
    from .execution.stages import walk

    data = load_yaml(args.config)
    if args.plugins_dir:
        data["plugins_dir"] = args.plugins_dir
    cfg = make_config(data)
    runtime = Runtime(plugins_dir=cfg.plugins_dir, quiet=True)
    _warn_plugins(runtime.registries)
    points = plan_sweep(cfg, runtime, plan_run)
    plans = [p.plan for p in points] or [plan_run(cfg, runtime)]
    bad = [(f"sweep point {p.label}: " if points else "", n, m.error)
           for p, plan in zip(points or [None], plans) for n, m in plan.methods.items() if m.error]
    if bad:
        for where, n, e in bad:
            print(f"sipo-bench: {where}method {n!r}: {e}", file=sys.stderr)
        return 2
    plan = plans[0]
    n = len(walk([s for p in plans for s in p.stages()]))
    sweep = f", {len(points)} sweep points" if points else ""
    print(f"ok: task {plan.task.name}, methods {', '.join(plan.methods)}, {len(plan.grid)} weights, "
          f"{len(cfg.seeds)} seed(s){sweep}, {n} stages")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .reporting.outdir import ResultsDir, write_report
    from .reporting.outdir import render_files
    from .reporting.merge import load_summaries, merge
    from .reporting.report import console_table

    from .reporting.sweep_report import is_sweep_dir, render_sweep

    sweeps = [d for d in args.dirs if is_sweep_dir(Path(d))]
    if sweeps:
        if len(args.dirs) > 1 or args.out:
            raise UsageError(f"`{sweeps[0]}`: a sweep directory is re-rendered on its own (one DIR, no --out), "
                             f"got {len(args.dirs)} DIR(s){' and --out' if args.out else ''}")
        from .reporting.sweep_report import load_sweep

        index, _ = load_sweep(Path(sweeps[0]))
        for p in index["points"]:
            d = Path(sweeps[0]) / p["dir"]
            summary = load_summaries([d])[0]
            render_files(summary, d, _html_file(summary, d) if args.html else None)
        render_sweep(Path(sweeps[0]), html=args.html)
        _show_sweep(Path(sweeps[0]), quiet=False)  # re-rendering succeeded even if a method had failed
        return 0
    if len(args.dirs) > 1 and not args.out:
        raise UsageError("`--out`: expected a directory for the merged report when several DIRs are given, got nothing")
    summaries = load_summaries([Path(d) for d in args.dirs])
    summary = merge(summaries) if len(summaries) > 1 else summaries[0]
    if args.out:
        out = Path(args.out)
        ResultsDir(out).check_writable()
        write_report(out, summary, None)
    else:
        d = Path(args.dirs[0])
        out = d.parent if d.is_file() else d
        why = _probe(out)
        if why:
            raise UsageError(f"`{args.dirs[0]}`: cannot write the report into {str(out)!r} ({why}); "
                             f"write it elsewhere with --out DIR")
        render_files(summary, out, _html_file(summary, out) if args.html else None)
    with _stdout_may_close():
        _console().print(console_table(summary))
    return 0


def _html_file(summary: dict, out: Path) -> dict[str, bytes]:
    """{"index.html": the page of `summary` with the run files in `out`} (`report --html`)."""
    from .reporting.html_report import render_html, run_dir_files

    return {"index.html": render_html(summary, run_dir_files(out)).encode("utf-8")}


def _probe(path: Path) -> str | None:
    from .execution.fsio import probe_writable

    return probe_writable(path)


def cmd_cache(args: argparse.Namespace) -> int:
    from .execution.cache_admin import gc, verify
    from .execution.fsio import human_bytes
    from .execution.stages import Cache, default_cache_dir

    cache = Cache(args.cache_dir or default_cache_dir())
    if not (cache.root / "stages").is_dir() and not cache.root.is_dir():
        raise UsageError(f"`--cache-dir`: expected a sipo-bench cache directory, got {str(cache.root)!r} (not found)")
    if args.cache_command == "verify":
        rep = verify(cache, remove=args.remove)
        print(f"verified {rep.checked} stage(s), {human_bytes(rep.bytes)} hashed: "
              f"{len(rep.damaged)} damaged" + (f", {rep.removed} removed" if args.remove else "")
              + (f"; refreshed the recorded mtimes of {rep.refreshed} stage(s)" if rep.refreshed else ""))
        if rep.damaged and not args.remove:
            print("sipo-bench: damaged stages are recomputed by the next run that needs them only if the damage "
                  "shows on reuse; remove them with `sipo-bench cache verify --remove`", file=sys.stderr)
            return 1
        return 0
    rep = gc(cache, dry_run=args.dry_run)
    print(f"{'would remove' if args.dry_run else 'removed'} {len(rep.removed)} item(s), {human_bytes(rep.bytes)}; "
          f"kept {rep.kept_stages} stage(s) referenced by {len(rep.live_runs) + len(rep.unknown_runs)} run(s)"
          + (f" ({len(rep.unknown_runs)} on other hosts, kept unchecked)" if rep.unknown_runs else ""))
    return 0


def cmd_conflicts(args: argparse.Namespace) -> int:
    from .scoring.conflicts import conflict_report

    return conflict_report(args)


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "ls": cmd_ls, "show": cmd_show, "validate": cmd_validate,
            "report": cmd_report, "cache": cmd_cache, "conflicts": cmd_conflicts}


class _stdout_may_close:
    """`sipo-bench ls methods | head -1`: when the reader goes away, stop writing quietly
    (stdout pointed at /dev/null, so the interpreter's final flush does not complain)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp, value, tb) -> bool:
        if tp is not None and issubclass(tp, BrokenPipeError):
            _silence_stdout()
            return True
        return False


def _console() -> Any:
    """A rich console for stdout whose closed-pipe handling is ours (rich's own exits 1)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console()


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _quiet_libraries() -> None:
    """Stage progress is ours (one rich display); silence the libraries' own tqdm bars."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    from .execution.signals import Terminated, sigterm_raises

    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        with sigterm_raises():
            return COMMANDS[args.command](args)
    except SipoBenchError as e:
        print(f"sipo-bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # the reader of stdout went away (`| head -1`, `| grep -q`)
        _silence_stdout()
        return 0
    except Terminated:
        print("sipo-bench: terminated (SIGTERM); temp files removed, finished stages are cached: rerun the same "
              "command to resume", file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print("sipo-bench: interrupted; finished stages are cached, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
